"""The report's words: the discussion, generated from the numbers (which model leads where, the drop from
validation to the cross-dataset test, who gets which class wrong; a difference is called significant
or not only from compare's paired tests, never from a fixed gap), then ethics and limitations, and
what more compute would allow."""

from __future__ import annotations

from typing import Sequence

from stages.analysis.document import Bullets, Figure, Paragraph, Section, Table, fmt, percent, signed
from stages.analysis.figures import SPLIT_TITLES
from stages.common.config import EVALUATED_SPLITS, Params
from stages.contracts.comparison import Comparison, PairedTest
from stages.contracts.evaluation import ModelMetrics, SplitMetrics

SIGNIFICANCE = 0.05   # the level at which the discussion calls a paired test's difference significant


def class_error_rates(split_metrics: SplitMetrics, classes: Sequence[str]) -> dict[str, float | None]:
    """Share of each class's images that are misclassified: 1 - specificity (class 0), 1 - sensitivity (class 1)."""
    rates = {}
    for name, recall in ((classes[0], split_metrics.specificity), (classes[1], split_metrics.sensitivity)):
        rates[name] = None if recall is None else 1 - recall
    return rates


def value(metrics: ModelMetrics, split: str, metric: str) -> float | None:
    """One model's value of `metric` on `split` (None where undefined)."""
    return getattr(metrics.split(split), metric)


def ranking(results: dict[str, ModelMetrics], split: str, metric: str = "roc_auc") -> list[str]:
    """The models with a value of `metric` on `split`, best first."""
    scored = {name: value(m, split, metric) for name, m in results.items() if value(m, split, metric) is not None}
    return sorted(scored, key=lambda name: -scored[name])


def verdict(p_value: float, test: str, adjusted: float | None = None) -> str:
    """"significant at 5% after Holm's correction (DeLong, p = 0.003, adjusted 0.02)": decided by the
    adjusted p-value where compare gave one (comparison.json's adjustment), else by the test's own."""
    deciding = p_value if adjusted is None else adjusted
    word = "significant" if deciding < SIGNIFICANCE else "not significant"
    if adjusted is None:
        return f"{word} at {SIGNIFICANCE:.0%} ({test}, p = {p_value:.2g})"
    return f"{word} at {SIGNIFICANCE:.0%} after Holm's correction ({test}, p = {p_value:.2g}, adjusted {adjusted:.2g})"


def deciding_p(test: PairedTest, kind: str = "roc_auc") -> float | None:
    """The p-value a verdict rests on: Holm-adjusted where compare adjusted, else the test's own."""
    adjusted = getattr(test, f"{kind}_p_adjusted")
    return adjusted if adjusted is not None else getattr(test, f"{kind}_p_value")


def auc_verdict(test: PairedTest) -> str:
    """verdict() of the AUC test's p-value (DeLong's, over seeds where there are several), or "DeLong's
    test undefined (why)" where it has none."""
    if test.roc_auc_p_value is None:
        name = test.roc_auc_test.replace("DeLong", "DeLong's test", 1)      # "DeLong's test (over seeds)"
        return f"{name} undefined ({test.roc_auc_test_undefined})"
    return verdict(test.roc_auc_p_value, test.roc_auc_test, test.roc_auc_p_adjusted)


def paired_findings(comparison: Comparison) -> list:
    """Per split, every model against the reference on the same images, called from the paired tests."""
    blocks: list = []
    reference = comparison.reference
    for split in EVALUATED_SPLITS:
        items = []
        for model in comparison.models:
            test = comparison.paired(split, model, reference) if model != reference else None
            if test is None or test.roc_auc_difference is None:
                continue
            sign = 1 if test.first == model else -1
            items.append(f"{model}: ROC AUC {signed(sign * test.roc_auc_difference)}, "
                         f"{auc_verdict(test)}; accuracy {signed(sign * test.accuracy_difference)}, "
                         f"{verdict(test.accuracy_p_value, test.accuracy_test, test.accuracy_p_adjusted)}.")
        if items:
            blocks += [Paragraph(f"Against the {reference} on the same {SPLIT_TITLES[split]} images (paired tests):"),
                       Bullets(items)]
    seeds = len(comparison.seeds)
    if seeds > 1:
        sources = (f"Each test is over the {seeds} training runs per model: the mean difference, its variance the "
                   "spread between the runs plus that of the images drawn (Bouthillier et al., MLSys 2021), so a "
                   "difference called significant should hold with other seeds and on another CPU.")
    else:
        sources = ("The tests see which images were drawn, not which training run: another seed or CPU can move a "
                   "model's scores (more seeds: params.yaml's seeds).")
    if blocks and comparison.adjustment is not None:
        blocks.append(Paragraph(
            f"Each verdict rests on a p-value adjusted by Holm's method over all {comparison.adjustment.tests} "
            f"paired tests of this run ({comparison.adjustment.family.split(': ', 1)[-1]}), so that the chance of "
            f"calling any difference significant when none is stays under {SIGNIFICANCE:.0%}. {sources}"))
    return blocks


def discussion(results: dict[str, ModelMetrics], classes: Sequence[str], test_share: dict[str, float],
               comparison: Comparison | None = None) -> list:
    """Paragraphs and bullets drawn from the metrics: best models, the val-to-test drop, per-class errors;
    differences called significant or not only from compare's paired tests."""
    blocks: list = []
    names = list(results)
    best_by_split = {}
    for split in EVALUATED_SPLITS:
        order = ranking(results, split)
        if not order:
            continue
        best = best_by_split[split] = order[0]
        others = ", ".join(f"{n} {fmt(value(results[n], split, 'roc_auc'))}" for n in order[1:])
        blocks.append(Paragraph(
            f"On the {SPLIT_TITLES[split]} split the best model by ROC AUC is {best} "
            f"({results[best].description}) with {fmt(value(results[best], split, 'roc_auc'))}"
            + (f", ahead of {others}." if others else ".")))
    best_val, best_test = best_by_split.get("val"), best_by_split.get("test")
    if best_val and best_test and best_val != best_test:
        gap = value(results[best_test], "test", "roc_auc") - value(results[best_val], "test", "roc_auc")
        test = comparison.paired("test", best_test, best_val) if comparison else None
        if test is not None and test.roc_auc_test_undefined:
            caution = f" On the test images the gap is {fmt(gap)} AUC, {auc_verdict(test)}."
        elif test is not None and test.roc_auc_p_value is not None:
            caution = (f" On the test images the gap is {fmt(gap)} AUC, {auc_verdict(test)}"
                       + (": validation alone would have picked a weaker model for new data."
                          if deciding_p(test) < SIGNIFICANCE else ": the two may well be equally good there."))
        else:
            caution = f" On the test images the gap is {fmt(gap)} AUC (no paired test available: run compare)."
        blocks.append(Paragraph(f"The ranking changes between the splits: {best_val} leads on validation but "
                                f"{best_test} on the cross-dataset test.{caution}"))
    if comparison is not None:
        blocks += paired_findings(comparison)
    drops = {}
    items = []
    for name in names:
        val, test = results[name].val, results[name].test
        auc_drop = None if None in (val.roc_auc, test.roc_auc) else val.roc_auc - test.roc_auc
        accuracy_drop = None if None in (val.accuracy, test.accuracy) else val.accuracy - test.accuracy
        balanced_drop = (None if None in (val.balanced_accuracy, test.balanced_accuracy)
                         else val.balanced_accuracy - test.balanced_accuracy)
        drops[name] = auc_drop
        items.append(f"{name}: ROC AUC {fmt(val.roc_auc)} on validation, {fmt(test.roc_auc)} on test "
                     f"(drop {fmt(auc_drop)}); accuracy {fmt(val.accuracy)} to {fmt(test.accuracy)} "
                     f"(drop {fmt(accuracy_drop)}); balanced accuracy {fmt(val.balanced_accuracy)} to "
                     f"{fmt(test.balanced_accuracy)} (drop {fmt(balanced_drop)}).")
    losing = sum(1 for drop in drops.values() if drop is not None and drop > 0)
    who = "every model loses" if losing == len(drops) else f"{losing} of {len(drops)} models lose"
    blocks.append(Paragraph("From validation to the cross-dataset test (another source of faces, never seen "
                            f"in training) {who} ground:"))
    blocks.append(Bullets(items))
    known = {name: drop for name, drop in drops.items() if drop is not None}
    if len(known) > 1:
        steadiest, largest = min(known, key=known.get), max(known, key=known.get)
        blocks.append(Paragraph(f"{steadiest} transfers best to the new source (AUC drop {fmt(known[steadiest])}); "
                                f"{largest} the worst ({fmt(known[largest])})."))
    errors = []
    for name in names:
        for split in EVALUATED_SPLITS:
            rates = class_error_rates(results[name].split(split), classes)
            if None in rates.values():
                continue
            worse = max(rates, key=rates.get)
            errors.append(f"{name}, {SPLIT_TITLES[split]}: {percent(rates[classes[0]])} of {classes[0]} and "
                          f"{percent(rates[classes[1]])} of {classes[1]} images misclassified; "
                          f"{worse} is wrong more often.")
    blocks.append(Paragraph("Per-class error rates (the share of each class's images given the other label):"))
    blocks.append(Bullets(errors))
    majority = max(test_share, key=test_share.get)
    blocks.append(Paragraph(
        f"The test source is {percent(test_share[majority])} {majority}: answering {majority} every time scores "
        f"{fmt(test_share[majority])} accuracy there, and a model's accuracy means something only above that. "
        "Accuracy and precision move with that share, so compare models across the two splits by balanced "
        "accuracy, ROC AUC and the per-class rates, which do not."))
    return blocks


def _with_interval(value: float | None, bounds) -> str:
    return fmt(value) + (f" [{fmt(bounds.low)}–{fmt(bounds.high)}]" if bounds else "")


def calibration_section(results: dict[str, ModelMetrics], figures: dict[str, object], threshold: float) -> Section:
    """Whether each model's P(Male) means what it says: ECE and Brier per split with intervals, what one
    temperature fitted on validation does to the test split, and a threshold chosen on validation
    against evaluate.threshold on the test split; the reliability diagrams (figures: name -> PNG)."""
    calibrated = {name: metrics.calibration for name, metrics in results.items() if metrics.calibration}
    if not calibrated:
        return Section("calibration", "Calibration", [Paragraph("Not measured: evaluate.calibration was off.")])
    bins = next(iter(calibrated.values())).bins
    rows = [[name, SPLIT_TITLES[split], *(_with_interval(getattr(getattr(found, split), score),
                                                         getattr(found, split).interval.get(score))
                                          for score in ("ece", "brier"))]
            for name, found in calibrated.items() for split in EVALUATED_SPLITS]
    blocks: list = [
        Paragraph(f"A model is calibrated when, of the faces it gives P(Male) = 0.8, about 80% are men. The "
                  f"reliability diagrams put each of {bins} equal-width bins of P(Male) at its mean predicted "
                  "probability against the observed share of men; ECE, the expected calibration error, is the "
                  "bins' gap to the diagonal weighted by their images, and the Brier score the mean squared "
                  "error of the probabilities (0.25 for a constant 0.5). Lower is better for both; square "
                  "brackets hold the bootstrap interval."),
        Table(["model", "split", "ECE", "Brier"], rows, "Calibration per split")]
    scaled = [[name, fmt(found.temperature.temperature), fmt(found.test.ece), fmt(found.temperature.test.ece),
               fmt(found.test.brier), fmt(found.temperature.test.brier)]
              for name, found in calibrated.items() if found.temperature and found.temperature.test]
    if scaled:
        blocks += [Paragraph("Temperature scaling: one number T fitted on validation divides every logit "
                             "(T > 1 softens over-confident probabilities). It cannot change ROC AUC or any decision "
                             "at 0.5, only calibration; here is what it does on the cross-dataset test:"),
                   Table(["model", "T", "test ECE", "with T", "test Brier", "with T"], scaled, "Temperature scaling")]
    chosen = [[name, fmt(found.threshold.threshold),
               *(f"{fmt(found.threshold.test.get(key))} ({fmt(getattr(results[name].test, key))})"
                 for key in ("accuracy", "balanced_accuracy", "sensitivity", "specificity"))]
              for name, found in calibrated.items() if found.threshold and found.threshold.threshold is not None]
    if chosen:
        blocks += [Paragraph(f"A threshold chosen on validation (Youden's J: the largest "
                             "sensitivity + specificity - 1) and the cross-dataset test at it; in brackets the "
                             f"test at evaluate.threshold, {fmt(threshold, 2)}:"),
                   Table(["model", "threshold", "test accuracy", "balanced accuracy", "sensitivity", "specificity"],
                         chosen, "Threshold chosen on validation")]
    blocks += [Figure(path, f"{name}: reliability diagram, validation and cross-dataset test")
               for name, path in figures.items()]
    return Section("calibration", "Calibration", blocks)


def ethics_section(params: Params, test_share: dict[str, float], grouped: bool = False) -> Section:
    """Ethics and limitations; `grouped`: the report shows results per group (the data carry groups)."""
    majority = max(test_share, key=test_share.get)
    if grouped:
        unseen = ("What the numbers do not show: error rates by any group the data do not name (the per-group results "
                  "above cover only the groups in data/prepared/groups.csv"
                  + ("; the offline sample's are a synthetic skin tone, not people's" if params.download.source
                     == "sample" else "") + "), or how the models behave on faces unlike the two sources.")
    else:
        unseen = ("What the numbers do not show: error rates by age, skin tone, image quality or any other group (the "
                  "data carries no such labels), or how the models behave on faces unlike the two sources.")
    items = [
        "Gender is not binary and is not something a face shows: these models learn to reproduce the two labels "
        "in the datasets, which are annotators' perceptions of presentation, not anyone's gender identity. "
        "Non-binary and transgender people are misclassified by construction.",
        "Consent and provenance: the Kaggle datasets are faces collected from the web, mostly without the "
        "consent of the people shown; their licences and origins are not fully documented." if params.download.source
        != "own" else "Consent and provenance: your own data; whether the people shown agreed to this use is yours "
        "to know and state.",
        f"Class imbalance: the test source is {percent(test_share[majority])} {majority}, so accuracy and precision "
        f"there partly reflect that share (always answering {majority} scores {fmt(test_share[majority])}); balanced "
        "accuracy and the per-class error rates above show who bears the errors.",
        "Misuse: automatic gender inference enables surveillance, targeted advertising and exclusion from "
        "services; a model like this should not be deployed to make decisions about people.",
        unseen,
    ]
    blocks: list = [Bullets(items)]
    if params.download.source == "sample":
        blocks.insert(0, Paragraph("These results come from the synthetic sample, not from photographs of people: "
                                   "they show that the pipeline works end to end, nothing about real faces."))
    return Section("ethics", "Ethics and limitations", blocks)


def compute_section(params: Params, model_ideas: list[str]) -> Section:
    """What more compute would allow, drawn from the current configuration and each model's own ideas."""
    items = []
    if params.download.source == "sample":
        items.append("Run on the real datasets (download.source: kaggle) instead of the synthetic sample.")
    items += model_ideas
    items.append(f"A larger input than {params.prepare.image_size}x{params.prepare.image_size} "
                 "(prepare.image_size; VGG16 was trained at 224x224).")
    if len(params.seeds) < 2:
        items.append("Several seeds per model (params.yaml's seeds; five: dvc exp run -S 'seeds=[2021,1,2,3,4]'): "
                     "the intervals and paired tests here measure the uncertainty from the images, not from "
                     "training (each model is a single run).")
    return Section("compute", "What more compute would allow", [Bullets(items)])

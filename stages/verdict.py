"""verdict: the run's outcome in one small table, then the report's path (make run ends with it).

    facegender verdict

Per model and split: ROC AUC with its bootstrap interval, accuracy, balanced accuracy (the mean of the
two classes' recall), and against the reference model (compare.reference) the difference in ROC AUC with
its paired test's p-value (DeLong, on the same images); under the table, what always answering each
split's larger class scores, the accuracy a model must beat. With several seeds: each value the mean
over the runs, its standard deviation over them in place of the interval, and DeLong's test over the
seeds. Read from what evaluate and compare wrote;
nothing is computed again. When the numbers differ from the committed ones although params.yaml and
the code do not, one line says why (another CPU or TensorFlow build) and how to see by how much.
"""

from __future__ import annotations

import argparse
import subprocess
from importlib import metadata
from typing import Sequence

from stages.analysis.document import fmt, signed
from stages.analysis.terminal import text_table
from stages.common import cli
from stages.common.config import EVALUATED_SPLITS, PARAMS_FILE, REPORTS_DIR, load_params
from stages.common.machine import describe_cpu
from stages.contracts.comparison import Comparison, PairedTest
from stages.contracts.evaluation import ModelMetrics

HEADER = ["model", "split", "ROC AUC", "interval", "accuracy", "balanced", "AUC vs {reference}", "p (DeLong, Holm)"]
# What a run may change without any edit of the user's: the pipeline's small outputs in git, but the
# exports' timings, which every run measures anew (the numbers the verdict shows are the rest).
OUTPUTS_IN_GIT = ("metrics", "plots", ":(exclude)metrics/export")
# What, changed, explains changed outputs: the user's own edits.
INPUTS_IN_GIT = (str(PARAMS_FILE), "dvc.yaml", "stages")


def shown_p_value(test: PairedTest | None) -> str:
    """DeLong's p-value, Holm-adjusted over the run's paired tests where compare adjusted (its own
    otherwise), in two significant digits, or <0.001; undefined where the test is (the reason goes
    under the table); - where there was no test."""
    if test is not None and test.roc_auc_test_undefined:
        return "undefined"
    value = None if test is None else test.roc_auc_p_adjusted if test.roc_auc_p_adjusted is not None \
        else test.roc_auc_p_value
    return "-" if value is None else f"{value:.2g}" if value >= 0.001 else "<0.001"


def verdict_lines(metrics: dict[str, ModelMetrics], comparison: Comparison) -> list[str]:
    """The table: one row per model and split, the reference model's first."""
    reference = comparison.reference
    order = [reference, *(name for name in metrics if name != reference)]
    rows, reasons = [], []
    seeds = len(comparison.seeds)
    for name in order:
        for split in EVALUATED_SPLITS:
            values = comparison.over_seeds(name, metrics[name]).split(split)
            bounds = values.interval.get("roc_auc")
            interval = f"{fmt(bounds.low)}-{fmt(bounds.high)}" if bounds else "-"
            if seeds > 1:
                deviation = comparison.spread[split]["roc_auc"][name].standard_deviation
                interval = "-" if deviation is None else f"± {fmt(deviation)}"
            if name == reference:
                against, p = "reference", ""
            else:
                test = comparison.paired(split, name, reference)
                sign = 1 if test is not None and test.first == name else -1
                difference = None if test is None or test.roc_auc_difference is None else sign * test.roc_auc_difference
                against, p = signed(difference), shown_p_value(test)
                if test is not None and test.roc_auc_test_undefined:
                    reasons.append(f"{name} {split}: no DeLong p-value: {test.roc_auc_test_undefined}")
            rows.append([name if split == EVALUATED_SPLITS[0] else "", split, fmt(values.roc_auc), interval,
                         fmt(values.accuracy), fmt(values.balanced_accuracy), against, p])
    header = [title.format(reference=reference) for title in HEADER]
    if comparison.adjustment is None:          # written before compare adjusted for multiplicity
        header[-1] = "p (DeLong)"
    level = next((m.bootstrap.level for m in metrics.values() if m.bootstrap), None)
    if seeds > 1:
        header[2:4] = [f"ROC AUC, mean of {seeds} seeds", "SD"]
        header[-1] = header[-1].replace("DeLong", "DeLong over seeds")
    elif level is not None:
        header[3] = f"{level:.0%} interval"
    return (text_table(header, rows, right=[False, False, True, True, True, True, True, True])
            + majority_lines(metrics[reference]) + reasons)


def majority_lines(run: ModelMetrics) -> list[str]:
    """One line: what always answering each split's larger class scores (the same images for every model)."""
    rates = [f"{fmt(run.split(split).majority_rate)} on {split}" for split in EVALUATED_SPLITS
             if run.split(split).majority_rate is not None]
    return [f"Always answering the larger class scores {', '.join(rates)}: the accuracy to beat."] if rates else []


def git_changed(paths: Sequence[str]) -> bool | None:
    """Whether any of `paths` differs from the last commit; None outside a git repository."""
    try:
        done = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", *paths], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return {0: False, 1: True}.get(done.returncode)


def committed_difference() -> str | None:
    """One line when the run's outputs differ from the committed ones, saying why; else None."""
    if not git_changed(OUTPUTS_IN_GIT):
        return None
    if git_changed(INPUTS_IN_GIT):
        return ("These numbers differ from the committed ones: params.yaml or the code changed (git diff); "
                "`dvc metrics diff` shows by how much.")
    try:
        tensorflow = f"TensorFlow {metadata.version('tensorflow')}"
    except metadata.PackageNotFoundError:
        tensorflow = "TensorFlow"
    return (f"These numbers differ from the committed ones with the same code and params: another CPU or TensorFlow "
            f"build trains slightly differently (here: {describe_cpu()}, {tensorflow}); `dvc metrics diff` shows "
            "by how much.")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    params = load_params()
    metrics = {name: ModelMetrics.read(ModelMetrics.path(name, params.seeds[0])) for name in params.model_names}
    comparison = Comparison.read(Comparison.path)
    print("\n".join(verdict_lines(metrics, comparison)))
    note = committed_difference()
    if note:
        print(note)
    print(f"Report: {REPORTS_DIR / 'report.html'}")


if __name__ == "__main__":
    cli.run(main, stage=False)

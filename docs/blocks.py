"""The generated blocks of the docs: tables and terminal output rendered whole from the results files,
and the functions a figure may call."""

from __future__ import annotations

import re
import string
from types import SimpleNamespace
from typing import Any, Callable

from docs.sources import FLAGS_NOTE, Measured, RenderError, Sources, cpu, formatted, step
from stages.modelkit import engine_choice


class _Shows(string.Formatter):
    """str.format for measured.yaml's `shows`: a list is its items in the spec, joined."""

    def format_field(self, value: Any, format_spec: str) -> str:
        if isinstance(value, list):
            if len(value) == 2 and all(isinstance(item, (int, float)) for item in value) and format_spec:
                return "-".join(format(item, format_spec) for item in value)
            return ", ".join(self.format_field(item, format_spec) for item in value)
        return format(value, format_spec)


def shows(entry: Measured) -> str:
    """A measured entry's figures in its own words (its `shows`)."""
    return _Shows().format(entry.entry["shows"], **entry)


def date(record: Any) -> str:
    """The date of a results run or a measured entry."""
    return str(record.entry.get("date") if isinstance(record, Measured) else record["date"])


def disk(sources: Sources, path: str) -> str:
    """The newest disk figure in benchmarks/timings.json whose paths start with `path`, in GB."""
    found = [entry for entry in sources["timings"]["disk"] if entry["paths"][0] == path]
    if not found:
        raise RenderError(f"benchmarks/timings.json has no disk figure for {path} (python -m benchmarks.timings --disk)")
    return f"{found[-1]['bytes'] / 1e9:.1f} GB"


# What a figure may call; those that read a source take the sources first.
FUNCTIONS: dict[str, Callable[..., Any]] = {"cpu": cpu, "date": date, "shows": shows, "disk": disk}
NEEDS_SOURCES = {"disk"}


def _table(header: list[str], rows: list[list[str]], align: str = "") -> list[str]:
    rule = [("---:" if kind == "r" else "---") for kind in (align or "l" * len(header))]
    return ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|", *("| " + " | ".join(row) + " |" for row in rows)]


def _secs(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds < 600 else f"{seconds / 60:.0f} min"


def _gib(mb: float) -> str:
    return f"{mb / 1024:.2f} GiB"   # results.json's MB are MiB, as benchmarks/report.py reads them


def _p(value: float | None) -> str:
    """A p-value as the tables show it; an undefined test (None) says so."""
    return "undefined" if value is None else formatted(value, ".1e" if value < 0.001 else ".3f")


# ---------------------------------------------------------------- README and the user's own runs

def block_times(sources: Sources) -> list[str]:
    """What the README's commands take at the current code: per CPU kind the latest timing of each since
    timings.json's `current_since` (the date the code last changed how long they take), and the legend."""
    commands = ["make run", "make test", "make test-fast"]
    latest: dict[str, dict[str, dict]] = {}
    for run in sources["timings"]["runs"]:
        if run["command"] in commands and run["date"] >= sources["timings"]["current_since"]:
            latest.setdefault(cpu(run), {})[run["command"]] = run
    rows = []
    for kind, runs in sorted(latest.items(), key=lambda item: max(run["date"] for run in item[1].values()), reverse=True):
        def cell(command: str) -> str:
            run = runs.get(command)
            if not run:
                return "not measured"
            installed = ", install included" if run.get("includes_install") else ""
            return f"about {run['wall_s'] / 60:.0f} min" if run.get("approximate") else _minutes(run["wall_s"]) + installed
        test = runs.get("make test", {})
        rows.append([kind, *map(cell, commands), test.get("result") or "",
                     max(run["date"] for run in runs.values())])
    return [*_table(["CPU", "`make run`", "`make test`", "`make test-fast`", "tests", "measured"], rows, "lrrrll"),
            "", *FLAGS_NOTE, "Older timings and other commands: [benchmarks/timings.json](benchmarks/timings.json)."]


def block_verdict(sources: Sources) -> list[str]:
    """The verdict `make run` ends with, for the committed run (stages/verdict.py's own table)."""
    from stages.contracts.comparison import Comparison   # light: pydantic and pandas, no TensorFlow
    from stages.contracts.evaluation import ModelMetrics
    from stages.verdict import verdict_lines

    metrics = {name: ModelMetrics.model_validate(sources["evaluate"][name]) for name in sources["params"]["train"]}
    lines = verdict_lines(metrics, Comparison.model_validate(sources["comparison"]))
    return ["```console", "$ make run", "...", *lines, "Report: reports/report.html", "```"]


def block_transcript(sources: Sources, name: str) -> list[str]:
    """A command and what it printed, recorded by `python -m docs.transcripts` in a real run."""
    found = step(sources["transcripts"]["transcripts"], name)
    return ["```console", f"$ {found['command']}", *found["output"].rstrip("\n").splitlines(), "```"]


def trained_on(record: dict) -> str:
    """Where a model of metrics/train/ was trained: its CPU and TensorFlow version."""
    found = record.get("trained_on")
    return f"{cpu(found)}, TensorFlow {found['tensorflow']}" if found else "a machine not recorded"


def block_sample_results(sources: Sources) -> list[str]:
    """The offline sample's metrics per model and split (metrics/), and the random-weights control."""
    metrics = ["accuracy", "balanced_accuracy", "sensitivity", "specificity", "precision", "f1", "roc_auc"]

    def value(scores: dict, name: str) -> str:    # balanced accuracy: the mean of the two recalls, where not stored
        found = scores.get(name, (scores["sensitivity"] + scores["specificity"]) / 2)
        return f"{found:.3f}"

    rows = [[model, split, *(value(values[split], name) for name in metrics)]
            for model, values in sources["evaluate"].items() for split in ("val", "test")]
    control = sources["measured"]["transfer_random_control"]
    rows += [["transfer, random weights (the control)", split, *(value(control[split], name) for name in metrics)]
             for split in ("val", "test")]
    counts = sources["prepare"]["counts"]
    machines = {trained_on(record) for record in sources["train"].values()}
    return [f"Defaults: {counts['train']['total']:,} training, {counts['val']['total']:,} validation and "
            f"{counts['test']['total']:,} test images, one seed. Trained on {' and '.join(sorted(machines))}. The "
            f"control row is `measured.transfer_random_control` ({date(control)}, {cpu(control)}).", "",
            *_table(["model", "split", "accuracy", "balanced accuracy", "sensitivity", "specificity", "precision", "F1",
                     "ROC AUC"], rows, "llrrrrrrr")]


def block_sample_tests(sources: Sources) -> list[str]:
    """metrics/comparison.json's paired tests: every pair of models on the same images, per split, each
    p-value beside its Holm-adjusted one (the family: every test in the file)."""
    rows = [[split, f"{test['first']} − {test['second']}", f"{test['roc_auc_difference']:+.3f}",
             _p(test["roc_auc_p_value"]), _p(test.get("roc_auc_p_adjusted")), f"{test['accuracy_difference']:+.3f}",
             _p(test["accuracy_p_value"]), _p(test.get("accuracy_p_adjusted"))]
            for split in ("val", "test") for test in sources["comparison"]["tests"][split].values()]
    return _table(["split", "pair", "ROC AUC difference", "DeLong p", "Holm", "accuracy difference", "McNemar p",
                   "Holm"], rows, "llrrrrrr")


def block_seed_flips(sources: Sources) -> list[str]:
    """benchmarks/seeds.json: per pair and split the mean AUC difference over the seeds, its spread, the
    seed-aware verdict, and how many one-seed verdicts differ from it."""
    found = sources["seeds"]
    seeds = found["seeds"]
    rows = [[row["split"], row["pair"].replace(" - ", " − "), f"{row['auc_difference_mean']:+.3f}",
             f"{row['auc_difference_seed_sd']:.3f}", _p(row["p_holm"]), row["verdict"],
             f"{row['flips']} of {len(seeds)}"] for row in found["rows"]]
    return [f"Seeds {', '.join(map(str, seeds))} on the offline sample, {found['date']}, {cpu(found)}: "
            f"{found['flips']} of {found['comparisons']} one-seed verdicts differ from the {len(seeds)}-seed one.", "",
            *_table(["split", "pair", "mean AUC difference", "spread over seeds (sd)", "p (seed-aware, Holm)",
                     f"{len(seeds)}-seed verdict", "one-seed verdicts that differ"], rows, "llrrrlr")]


def block_seed_cost(sources: Sources) -> list[str]:
    """What more seeds cost: on the sample, the seeds benchmark's experiment (benchmarks/seeds.json); at
    the real data's scale, the scale-1 benchmark's train and evaluate stages once more per extra seed."""
    found, run = sources["seeds"], sources["bench1"]
    extra = len(found["seeds"]) - 1
    per_seed = sum(stage["wall_s"] for stage in run["stages"] if stage["stage"].startswith(("train@", "evaluate@")))
    total = sum(stage["wall_s"] for stage in run["stages"])
    return [f"- On the offline sample, {cpu(found)}: {found['experiments_wall_s'] / 60:.0f} min for the experiment "
            f"with {len(found['seeds'])} seeds ({extra} new seeds' train and evaluate stages, then compare and report).",
            f"- At the real data's scale, {cpu(run)}: train and evaluate take {per_seed / 60:.0f} min of the "
            f"{total / 60:.0f} min `dvc repro`, so {extra} more seeds add about {extra * per_seed / 60:.0f} min "
            "(`make real-plan` scales the estimate to your machine and counts params.yaml's seeds)."]


# ---------------------------------------------------------------- the real data's scale

def block_bench_stages(sources: Sources) -> list[str]:
    """The latest scale-1 benchmark run, stage by stage, naming its machine."""
    run = sources["bench1"]
    rows = [[stage["stage"], _secs(stage["wall_s"]), _secs(stage["cpu_s"]), _gib(stage["peak_rss_tree_mb"]),
             f"{stage['dvc_s']:.1f} s ({stage['dvc_pct']:.1f}%)"] for stage in run["stages"]]
    rows.append(["**whole `dvc repro`**", f"**{run['repro']['wall_s'] / 60:.1f} min**",
                 f"{run['repro']['cpu_s'] / 60:.0f} min", "", f"start-up {run['dvc_startup_s']:.0f} s"])
    return [f"Scale {run['scale']:g} ({sum(run['images'].values()):,} images), {run['date']}, {cpu(run)}, "
            f"{run['machine']['memory_gib']} GiB, no GPU.", "",
            *_table(["stage", "wall", "CPU", "peak RSS", "DVC after it"], rows, "lrrrr")]


def block_push_sizes(sources: Sources) -> list[str]:
    """What a push holds at the real data's scale (measured.yaml) and what it costs to rebuild (bench1)."""
    sizes, run = sources["measured"]["push_sizes"], sources["bench1"]
    # train@<model>-<seed>: one seed's stage stands for the model
    walls = {stage["stage"].rsplit("-", 1)[0] if "@" in stage["stage"] else stage["stage"]: stage["wall_s"]
             for stage in run["stages"]}
    trains = [name for name in walls if name.startswith("train@")]
    rows = [["`data/raw`", f"{sizes['raw_mb']} MB (the corpus; the real archives are what Kaggle serves)", "download",
             "network"],
            ["`data/prepared`", f"{sizes['prepared_mb']} MB", "prepare", _secs(walls["prepare"])],
            ["`data/tfrecords`", f"{sizes['tfrecords_mb']} MB", "tfrecords", _secs(walls["tfrecords"])],
            ["`data/features`", f"{sizes['features_bfloat16_gb']} GB in bfloat16 (float32 takes twice the bytes)",
             "features", _minutes(walls["features"])],
            ["`models/`", f"{sizes['models_mb']} MB", "train@<model>-<seed>",
             ", ".join(f"{walls[name] / 60:.1f}" for name in trains) + " min"],
            ["`data/evaluate/`, `reports/`", f"{sizes['evaluate_and_reports_mb']} MB", "evaluate, report",
             _secs(sum(wall for name, wall in walls.items() if name.startswith("evaluate@") or name == "report"))]]
    return [f"Sizes: `measured.push_sizes` ({date(sizes)}, {cpu(sizes)}). Rebuild times: the benchmark of "
            f"{run['date']}, {cpu(run)}.", "", *_table(["output", "size", "rebuilt by", "time"], rows, "lrlr")]


def block_real_plan(sources: Sources) -> list[str]:
    """What `make real-plan` prints, by stages/plan.py's own code, for measured.yaml's example datasets."""
    from stages import plan   # its imports are light (no TensorFlow): one way to format the plan

    example = sources["measured"]["real_plan_example"]
    params = plan.real_params()
    infos = {name: SimpleNamespace(slug=dataset.slug, version=example["version"], last_updated=example["updated"],
                                   total_bytes=max(1, int(example["archive_gb"] * plan.GB)), license=example["licence"])
             for name, dataset in params.download.datasets.items()}
    lines, _ = plan.plan_lines(infos, params, int(example["free_gb"] * plan.GB), sources["bench1"],
                               example["cores_here"], True)
    return ["```console", "$ make real-plan", *lines, "```"]


ENGINE_NAMES = {"float32/keras": "Keras, float32", "bfloat16/keras": "Keras, bfloat16",
                "float32/litert": "LiteRT (XNNPACK), float32"}


def block_engines(sources: Sources) -> list[str]:
    """The frozen base per image on each engine, per CPU measured, as it is and with oneDNN capped at AVX2,
    and what `auto`'s rule (stages/modelkit/engine_choice.py) runs on that CPU."""
    def cell(found: dict) -> str:
        return "cannot run" if "failed" in found else f"{found['wall_ms_per_image']:.1f} ms"

    header = ["CPU", "oneDNN", *ENGINE_NAMES.values(), "`auto` runs"]
    rows = []
    for result in sources["engines"]["machines"]:
        for label, runs in (("as it is", result["runs"]["native"]), ("capped at AVX2", result["runs"]["onednn_avx2"])):
            machine, cap = result["machine"], "" if label == "as it is" else "AVX2"
            chosen = engine_choice.label(engine_choice.rule(machine["cpu"], machine["flags"], cap)[0])
            rows.append([cpu(result), label, *(cell(runs[kind]) for kind in ENGINE_NAMES), chosen])
    largest = {kind: max((found["max_relative_difference"] for result in sources["engines"]["machines"]
                          if (found := result["runs"]["native"][kind]).get("max_relative_difference") is not None),
                         default=None) for kind in ENGINE_NAMES if kind != "float32/keras"}
    apart = "; ".join(f"{ENGINE_NAMES[kind]} at most {formatted(value, '.0e')}" for kind, value in largest.items()
                      if value is not None)
    return [f"The frozen base, wall time an image in batches of features.batch_size. Largest difference to Keras "
            f"float32, relative to its largest output, on any CPU: {apart}.", "",
            *_table(header, rows, "llrrrl")]


def block_exports(sources: Sources) -> list[str]:
    """metrics/export/<model>.json: every exported format's size, time per image, difference and AUC."""
    titles = {"keras": "`.keras` (as predict runs it)", "saved_model": "SavedModel", "tflite": "LiteRT float32",
              "tflite_quantized": "LiteRT int8 weights"}
    rows, machines = [], set()
    for model, info in sources["exports"].items():
        described = re.fullmatch(r"(.+) \((.*)\)", info["machine"])   # "AMD EPYC (avx2, avx512f, avx512_bf16)"
        machines.add(cpu({"cpu": described[1], "flags": described[2].split(", ")}) if described else info["machine"])
        for kind, found in info["formats"].items():
            auc = "n/a" if found["val_auc"] is None else f"{found['val_auc']:.4f}"
            rows.append([model, titles[kind], f"{found['bytes'] / 1e6:.1f} MB", f"{found['ms_per_image']:.2f}",
                         f"{found['max_difference']:.1e}", auc])
    images = sorted({info["validation_images"] for info in sources["exports"].values()})
    return [f"Measured by the export stage on the {' and '.join(map(str, images))} validation images, "
            f"{' and '.join(sorted(machines))}. Time: per image at batch 1, the median. Difference: the largest in "
            "P(Male) to the `.keras` model computed in float32.", "",
            *_table(["model", "format", "size", "ms per image", "max difference", "val AUC"], rows, "llrrrr")]


BLOCKS: dict[str, Callable[..., list[str]]] = {
    "times": block_times, "verdict": block_verdict, "transcript": block_transcript,
    "sample-results": block_sample_results, "sample-tests": block_sample_tests, "seed-flips": block_seed_flips,
    "seed-cost": block_seed_cost, "bench-stages": block_bench_stages, "push-sizes": block_push_sizes,
    "real-plan": block_real_plan, "engines": block_engines, "exports": block_exports,
}


def block(name: str, args: str, sources: Sources) -> str:
    """A block's generated body: a blank line, its lines, a blank line (Markdown needs them around tables)."""
    if name not in BLOCKS:
        raise RenderError(f"unknown block {name!r}; blocks: {', '.join(BLOCKS)}")
    arguments = [part.split("=", 1)[-1] for part in args.split()]   # `ids=a,b` reads as `a,b`
    try:
        return "\n" + "\n".join(BLOCKS[name](sources, *arguments)) + "\n\n"
    except (KeyError, IndexError, TypeError) as error:
        raise RenderError(f"block {name}: the results file lacks {error}") from None

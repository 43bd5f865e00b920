"""The generated blocks of the docs: tables and examples rendered whole from the results files."""

from __future__ import annotations

import statistics
import string
from types import SimpleNamespace
from typing import Any, Callable

from docs.sources import (Measured, RenderError, Sources, cpu, date, formatted, minutes, step,
                          with_article)


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


def _table(header: list[str], rows: list[list[str]], align: str = "") -> list[str]:
    rule = [("---:" if kind == "r" else "---") for kind in (align or "l" * len(header))]
    return ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|", *("| " + " | ".join(row) + " |" for row in rows)]


def _secs(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"


def _gib(mb: float) -> str:
    return f"{mb / 1024:.2f} GiB"   # results.json's MB are MiB, as benchmarks/report.py reads them


def block_measured(sources: Sources, ids: str) -> list[str]:
    """A table of benchmarks/measured.yaml entries (what, how and on what, the figures), naming their machines."""
    entries = [step(sources["measured"], name) for name in ids.split(",")]
    machines = {cpu(entry) for entry in entries}
    header, align = ["", "measured", "result"], "lll"
    if len(machines) > 1:
        header, align = header + ["when, where"], align + "l"
    rows = []
    for entry in entries:
        row = [entry.entry.get("label", entry.entry["id"]), f"{entry.entry['what'].rstrip('.')}; {entry.entry['data']}",
               shows(entry)]
        if len(machines) > 1:
            row.append(f"{date(entry)}, {cpu(entry)}")
        rows.append(row)
    lines = _table(header, rows, align)
    if len(machines) == 1:
        dates = sorted({date(entry) for entry in entries})
        lines += ["", f"Measured {' and '.join(dates)} on {with_article(machines.pop())}; each entry, with the commit "
                      "that introduced it, is in [benchmarks/measured.yaml](../benchmarks/measured.yaml)."]
    return lines


def block_bench_stages(sources: Sources) -> list[str]:
    """The latest scale-1 benchmark run, stage by stage, naming its machine."""
    run = sources["bench1"]
    total = sum(run["images"].values())
    rows = [[stage["stage"], _secs(stage["wall_s"]), _secs(stage["cpu_s"]), _gib(stage["peak_rss_tree_mb"]),
             f"{stage['dvc_s']:.1f} s ({stage['dvc_pct']:.1f}%)"] for stage in run["stages"]]
    rows.append(["**whole `dvc repro`**", f"**{run['repro']['wall_s'] / 60:.1f} min**",
                 f"{run['repro']['cpu_s'] / 60:.0f} min", "", f"start-up {run['dvc_startup_s']:.0f} s"])
    return [f"Measured {run['date']} on {with_article(cpu(run))}, {run['machine']['memory_gib']} GiB, no GPU; scale "
            f"{run['scale']:g}: {total:,} images.", "",
            *_table(["stage", "wall", "CPU", "peak RSS", "DVC after it"], rows, "lrrrr")]


def block_bench_precision(sources: Sources) -> list[str]:
    """The frozen base's precisions at scale 0.25: features stage, bare predict, transfer AUC."""
    run = sources["bench025"]
    bare = run["references"]["bare_predict"]
    rows = []
    for precision, values in run["precision"].items():
        per_image = bare[precision]
        rows.append([f"`{precision}`", _secs(values["features_wall_s"]), _secs(values["features_cpu_s"]),
                     _gib(values["features_peak_rss_tree_mb"]),
                     f"{per_image['wall_ms_per_image']:.0f} ms ({per_image['cpu_ms_per_image']:.0f} ms CPU)",
                     f"{values['auc']['val']:.3f} / {values['auc']['test']:.3f}"])
    return [f"Measured {run['date']} on {with_article(cpu(run))}; scale {run['scale']:g} "
            f"({sum(run['images'].values()):,} images), each a full features stage and transfer model.", "",
            *_table(["precision", "features wall", "features CPU", "peak RSS", "bare `predict` an image",
                     "transfer AUC val / test"], rows, "lrrrrr")]


def block_bench_history(sources: Sources) -> list[str]:
    """The three scale-1 runs of 2026-11-29 side by side: the two replaced ones (measured.yaml), the third."""
    now = sources["bench1epyc"]
    stages = {stage["stage"]: stage for stage in now["stages"]}
    refs = now["references"]
    latest = {
        "pipeline_minutes": now["repro"]["wall_s"] / 60, "repro_cpu_s": now["repro"]["cpu_s"],
        "repro_log_bytes": now["repro"]["log_bytes"], "naive_prepare_wall_s": refs["naive_prepare"]["wall_s"],
        "prepare_speedup": now["summary"]["prepare_speedup"],
        "train_improved_wall_s": stages["train@improved"]["wall_s"], "features_wall_s": stages["features"]["wall_s"],
        "features_peak_rss_tree_mb": stages["features"]["peak_rss_tree_mb"],
        "train_transfer_peak_rss_tree_mb": stages["train@transfer"]["peak_rss_tree_mb"],
        "tfrecords_wall_s": stages["tfrecords"]["wall_s"], "tfrecords_dvc_s": stages["tfrecords"]["dvc_s"],
        "tfrecords_dvc_pct": stages["tfrecords"]["dvc_pct"], "compare_dvc_pct": stages["compare"]["dvc_pct"],
        "report_wall_s": stages["report"]["wall_s"], "report_dvc_pct": stages["report"]["dvc_pct"],
        **{f"evaluate_{model}_wall_s": stages[f"evaluate@{model}"]["wall_s"] for model in ("baseline", "improved", "transfer")},
        "features_wall_ms_per_image": now["summary"]["features_wall_ms_per_image"],
        "features_cpu_ms_per_image": now["summary"]["features_cpu_ms_per_image"],
        "bare_predict_bfloat16_wall_ms": refs["bare_predict"]["bfloat16"]["wall_ms_per_image"],
        "bare_predict_bfloat16_cpu_ms": refs["bare_predict"]["bfloat16"]["cpu_ms_per_image"],
        "epoch_tfrecords_s": refs["epoch"]["tfrecords_s_per_epoch"],
        "epoch_in_memory_s": refs["epoch"]["in_memory_s_per_epoch"], "epoch_ratio": refs["epoch"]["ratio"],
    }
    runs = [sources["measured"]["bench_1422"], sources["measured"]["bench_1638"], latest]
    rows_spec = [
        ("whole `dvc repro`", lambda r: f"{r['pipeline_minutes']:.1f} min ({r['repro_cpu_s'] / 60:.0f} min CPU)"),
        ("prepare against the naive loop", lambda r: f"{r['prepare_speedup']:.2f}x (loop {r['naive_prepare_wall_s']:.0f} s)"),
        ("train@improved, 20 epochs", lambda r: _secs(r["train_improved_wall_s"])),
        ("a baseline epoch: TFRecords / numpy arrays",
         lambda r: f"{r['epoch_tfrecords_s']:.1f} s / {r['epoch_in_memory_s']:.1f} s ({r['epoch_ratio']:.2f}x)"),
        ("features, stage", lambda r: _secs(r["features_wall_s"])),
        ("features, an image: stage / bare `predict` (wall)",
         lambda r: f"{r['features_wall_ms_per_image']:.1f} / {r['bare_predict_bfloat16_wall_ms']:.1f} ms"),
        ("features, an image: stage / bare `predict` (CPU)",
         lambda r: f"{r['features_cpu_ms_per_image']:.1f} / {r['bare_predict_bfloat16_cpu_ms']:.1f} ms"),
        ("evaluate@baseline, @improved, @transfer",
         lambda r: ", ".join(f"{r[f'evaluate_{m}_wall_s']:.1f}" for m in ("baseline", "improved", "transfer")) + " s"),
        ("tfrecords: stage, DVC after it", lambda r: f"{r['tfrecords_wall_s']:.1f} s, {r['tfrecords_dvc_s']:.1f} s ({r['tfrecords_dvc_pct']:.0f}%)"),
        ("report: stage (DVC after it)", lambda r: f"{r['report_wall_s']:.1f} s ({r['report_dvc_pct']:.0f}%)"),
        ("DVC after compare", lambda r: f"{r['compare_dvc_pct']:.0f}%"),
        ("peak RSS: features, train@transfer",
         lambda r: f"{_gib(r['features_peak_rss_tree_mb'])}, {_gib(r['train_transfer_peak_rss_tree_mb'])}"),
        ("`dvc repro`'s log (not a terminal)", lambda r: f"{r['repro_log_bytes'] / 1000:.1f} KB"),
    ]
    header = ["2026-11-29, scale 1", f"{runs[0]['run']} (replaced)", f"{runs[1]['run']} (replaced)",
              f"{now['date'][11:]} (results.json)"]
    rows = [[label, *(render(r) for r in runs)] for label, render in rows_spec]
    return [f"All three on {with_article(cpu(now))}; the replaced runs' figures are in "
            "[benchmarks/measured.yaml](../benchmarks/measured.yaml) (`bench_1422`, `bench_1638`).", "",
            *_table(header, rows, "lrrr")]


def trained_on(record: dict) -> str:
    """Where a model of metrics/train/ was trained: its CPU (model, flags) and TensorFlow version."""
    found = record.get("trained_on")
    if not found:
        return "a machine not recorded"
    return f"{with_article(cpu(found))} with TensorFlow {found['tensorflow']}"


def block_sample_results(sources: Sources) -> list[str]:
    """The offline sample's metrics per model and split (metrics/), and the random-weights control."""
    metrics = ["accuracy", "sensitivity", "specificity", "precision", "f1", "roc_auc"]
    rows = []
    for model, values in sources["evaluate"].items():
        for split in ("val", "test"):
            rows.append([model, split, *(f"{values[split][name]:.3f}" for name in metrics)])
    control = sources["measured"]["transfer_random_control"]
    for split in ("val", "test"):
        rows.append(["transfer, random weights (the control)", split, *(f"{control[split][name]:.3f}" for name in metrics)])
    counts = sources["prepare"]["counts"]
    names = "; ".join(f"{model}: {text}" for model, text in sources["comparison"]["models"].items())
    machines = {trained_on(record) for record in sources["train"].values()}
    return [f"Defaults ({counts['train']['total']:,} training, {counts['val']['total']:,} validation, "
            f"{counts['test']['total']:,} test images), one run, trained on {' and '.join(sorted(machines))}; "
            f"{names}. The control row is `measured.transfer_random_control` ({date(control)}, on "
            f"{with_article(cpu(control))}).", "",
            *_table(["model", "split", "accuracy", "sensitivity", "specificity", "precision", "F1", "ROC AUC"], rows,
                    "llrrrrrr")]


def _p(value: float | None) -> str:
    """A p-value as the tables show it; an undefined test (None) says so."""
    if value is None:
        return "undefined"
    return formatted(value, ".1e" if value < 0.001 else ".3f")


def block_sample_tests(sources: Sources) -> list[str]:
    """metrics/comparison.json's paired tests: every pair of models on the same images, per split, each
    p-value beside its Holm-adjusted one (the family: every test in the file)."""
    rows = []
    for split in ("val", "test"):
        for pair, test in sources["comparison"]["tests"][split].items():
            rows.append([split, f"{test['first']} − {test['second']}", f"{test['roc_auc_difference']:+.3f}",
                         _p(test["roc_auc_p_value"]), _p(test.get("roc_auc_p_adjusted")),
                         f"{test['accuracy_difference']:+.3f}",
                         _p(test["accuracy_p_value"]), _p(test.get("accuracy_p_adjusted"))])
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
    return [f"Seeds {', '.join(map(str, seeds))} on the offline sample, {found['date']}, on "
            f"{with_article(cpu(found))}: {found['flips']} of {found['comparisons']} one-seed verdicts differ from "
            f"the {len(seeds)}-seed one.", "",
            *_table(["split", "pair", "mean AUC difference", "spread over seeds (sd)", "p (seed-aware, Holm)",
                     f"{len(seeds)}-seed verdict", "one-seed verdicts that differ"], found["rows"] and rows, "llrrrlr")]


def block_seed_cost(sources: Sources) -> list[str]:
    """What more seeds cost: on the sample, the seeds benchmark's experiment (benchmarks/seeds.json); at
    the real data's scale, the scale-1 benchmark's train and evaluate stages once more per extra seed."""
    found, run = sources["seeds"], sources["bench1"]
    extra = len(found["seeds"]) - 1
    per_seed = sum(stage["wall_s"] for stage in run["stages"] if stage["stage"].startswith(("train@", "evaluate@")))
    total = sum(stage["wall_s"] for stage in run["stages"])
    return [f"- On the offline sample: {found['experiments_wall_s'] / 60:.0f} min for the experiment with "
            f"{len(found['seeds'])} seeds ({extra} new seeds' train and evaluate stages, then compare and report), "
            f"on {with_article(cpu(found))}.",
            f"- At the real data's scale (estimated): the scale-1 benchmark's train and evaluate stages take "
            f"{per_seed / 60:.0f} min of its {total / 60:.0f} min `dvc repro`, on {with_article(cpu(run))}; "
            f"{extra} more seeds add about {extra * per_seed / 60:.0f} min there "
            "(`make real-plan` scales the estimate to this machine and counts params.yaml's seeds)."]


def block_push_sizes(sources: Sources) -> list[str]:
    """What a push holds at the real data's scale (measured.yaml) and what it costs to rebuild (bench1)."""
    sizes, run = sources["measured"]["push_sizes"], sources["bench1"]
    # train@<model> in runs before seeds were a dimension, train@<model>-<seed> (one seed) since
    walls = {stage["stage"].rsplit("-", 1)[0] if "@" in stage["stage"] else stage["stage"]: stage["wall_s"]
             for stage in run["stages"]}

    def minutes(*names: str) -> str:
        return ", ".join(f"{walls[name] / 60:.1f}" for name in names) + " min"

    rows = [["`data/raw`", f"{sizes['raw_mb']} MB (the corpus; the real archives are what Kaggle serves)", "download", "network"],
            ["`data/prepared`", f"{sizes['prepared_mb']} MB", "prepare", _secs(walls["prepare"])],
            ["`data/tfrecords`", f"{sizes['tfrecords_mb']} MB", "tfrecords", _secs(walls["tfrecords"])],
            ["`data/features`", f"{sizes['features_bfloat16_gb']} GB in bfloat16 (float32 values take twice the bytes)",
             "features", minutes("features") + (f" ({run['engine']['precision']})" if run.get("engine") else "")],
            ["`models/`", f"{sizes['models_mb']} MB", "train@baseline, @improved, @transfer",
             minutes("train@baseline", "train@improved", "train@transfer")],
            ["`data/evaluate/`, `reports/`", f"{sizes['evaluate_and_reports_mb']} MB", "evaluate, report",
             _secs(sum(wall for name, wall in walls.items() if name.startswith("evaluate@") or name == "report"))]]
    return [f"Sizes: `measured.push_sizes` ({date(sizes)}, {cpu(sizes)}); rebuild times: the benchmark of "
            f"{run['date']} on {with_article(cpu(run))}.", "",
            *_table(["output", "size", "rebuilt by", "time"], rows, "lrlr")]


def block_timings(sources: Sources) -> list[str]:
    """Every timing of a user-facing command in benchmarks/timings.json, newest first."""
    rows = []
    for run in sorted(sources["timings"]["runs"], key=lambda run: run["date"], reverse=True):
        install = {True: "yes", False: "no"}.get(run.get("includes_install"), "not recorded")
        rows.append([f"`{run['command']}`", minutes(run), install, run.get("result") or "", run["date"], cpu(run),
                     run["source"]])
    return _table(["command", "took", "install included", "result", "date", "machine", "source"], rows, "lrlllll")


def block_real_plan(sources: Sources) -> list[str]:
    """`make real-plan`'s output for the recorded example, printed by stages/plan.py's own code."""
    from stages import plan   # its imports are light (no TensorFlow): one way to format the plan

    example = sources["measured"]["real_plan_example"]
    run = sources["bench1"]
    params = plan.real_params()
    infos = {name: SimpleNamespace(slug=dataset.slug, version=example["version"], last_updated=example["updated"],
                                   # under 0.05 GB prints as the example's 0.0 GB; 0 would print "not reported"
                                   total_bytes=max(1, int(example["archive_gb"] * plan.GB)), license=example["licence"])
             for name, dataset in params.download.datasets.items()}
    lines, _ = plan.plan_lines(infos, params, int(example["free_gb"] * plan.GB), run, example["cores_here"], True)
    return ["```console", "$ make real-plan", *lines, "```"]


def block_bench_kinds(sources: Sources, before: str = "") -> list[str]:
    """The scale-0.1 runs side by side, one per kind of CPU (stage wall time and cores used), and the
    measured.yaml entry `before` (an earlier run's stage times) first when given."""
    runs = sorted(sources["bench01"], key=lambda run: run["date"])
    if not runs:
        raise RenderError("benchmarks/results.json has no run at scale 0.1 (make bench SCALE=0.1)")
    columns = []
    if before:
        entry = sources["measured"][before]
        cap = entry.entry["machine"].get("onednn_max_cpu_isa")
        columns.append((f"before, {'oneDNN capped at ' + cap if cap else 'as it is'}: {entry.entry['label']}",
                        {name: (wall, None) for name, wall in entry["stages"].items()}, entry["repro_s"]))
    for run in runs:
        base = run.get("engine") or {}
        label = f"{_kind(run, short=True)}: base {base.get('precision', '?')} on {base.get('engine', '?')}"
        columns.append((label, {stage["stage"]: (stage["wall_s"], stage["cpu_s"] / stage["wall_s"] if stage["wall_s"] else None)
                                for stage in run["stages"]}, run["repro"]["wall_s"]))
    names = list(dict.fromkeys(name for _, stages, _ in columns for name in stages))
    rows = []
    for name in names:
        row = [name]
        for _, stages, _ in columns:
            wall, cores = stages.get(name, (None, None))
            row.append("" if wall is None else _secs(wall) + (f" ({cores:.2f})" if cores is not None else ""))
        rows.append(row)
    rows.append(["**whole `dvc repro`**", *(f"**{_secs(total)}**" for _, _, total in columns)])
    images = sum(runs[-1]["images"].values())
    machines = sorted({cpu({"machine": {key: value for key, value in run["machine"].items() if key != "onednn_max_cpu_isa"}})
                       for run in runs})
    return [f"Scale 0.1 ({images:,} images) on {' and '.join(with_article(found) for found in machines)}; each "
            "stage's wall time, and in brackets the cores it kept busy (CPU time over wall time).", "", *_table(["stage", *(label for label, _, _ in columns)], rows,
                                                     "l" + "r" * len(columns))]


def _kind(run: dict, short: bool = False) -> str:
    """A run's CPU in a few words: its model (unless short) or its kind of vector unit (short), and
    whether oneDNN was capped."""
    cap = run["machine"].get("onednn_max_cpu_isa")
    if short:
        flags = set(run["machine"].get("flags") or ())
        unit = ("AMX" if "amx_bf16" in flags else "avx512_bf16 without AMX" if "avx512_bf16" in flags
                else "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "flags not recorded")
        return f"{unit}, " + (f"oneDNN capped at {cap}" if cap else "as it is")
    return run["machine"]["cpu"] + (f", oneDNN capped at {cap}" if cap else "")


def _plan_errors(origin: dict, target: dict) -> list[tuple[str, float, float, float]]:
    """(stage, estimated s, measured s, relative error) for each of target's stages of 5 s or more, as
    make real-plan would estimate it on target's machine (with target's probe) from origin's run."""
    from stages import plan

    images = sum(target["images"].values())
    estimated = dict(plan.stage_times(origin, images, target["machine"]["cores"], target.get("feature_layer"),
                                      probe=target["probe"]))
    return [(stage["stage"], estimated[stage["stage"]], stage["wall_s"], estimated[stage["stage"]] / stage["wall_s"] - 1)
            for stage in target["stages"] if stage["wall_s"] >= 5 and stage["stage"] in estimated]


def _error_summary(errors: list[tuple[str, float, float, float]]) -> str:
    """"12%, worst 45% (export@transfer)": the median error's size over the stages, and the worst stage."""
    median = statistics.median(abs(error) for *_, error in errors)
    stage, *_, error = max(errors, key=lambda row: abs(row[3]))
    return f"{100 * median:.0f}%, worst {100 * abs(error):.0f}% ({stage})"


def block_plan_check(sources: Sources, repeat: str = "") -> list[str]:
    """make real-plan's estimate of each scale-0.1 run's stages from every other kind of CPU's run and
    the first run's own probe (stages/plan.py stage_times), against what the run measured: a matrix of
    the errors per pair (the diagonal: one machine running the same code twice, measured.<repeat>), then
    every stage, folded."""
    runs = sorted((run for run in sources["bench01"] if run.get("probe")), key=lambda run: run["date"])
    if len(runs) < 2:
        raise RenderError("plan-check needs two scale-0.1 runs with a probe, on two kinds of CPU (make bench SCALE=0.1)")
    twice = step(sources["measured"], repeat) if repeat else {}
    twice_kind = _kind(twice["first"], short=True) if twice else None
    kinds = [_kind(run, short=True) for run in runs]
    matrix, rows = [], []
    for origin, origin_kind in zip(runs, kinds):
        cells = []
        for target, target_kind in zip(runs, kinds):
            if origin is target:
                errors = (_plan_errors(twice["first"], twice["second"]) + _plan_errors(twice["second"], twice["first"])
                          if target_kind == twice_kind else [])
                cells.append(f"run twice: {_error_summary(errors)}" if errors else "")
                continue
            errors = _plan_errors(origin, target)
            cells.append(_error_summary(errors))
            rows += [[f"{origin_kind} → {target_kind}", stage, _secs(estimated), _secs(measured), f"{100 * error:+.0f}%"]
                     for stage, estimated, measured, error in errors]
        matrix.append([f"from {origin_kind}", *cells])
    machines = sorted({_kind(run).split(",")[0] for run in runs})
    caption = (f"Scale 0.1, on {' and '.join(with_article(found) for found in machines)}. Each cell: the plan's error over "
               "the stages of 5 s or more (the median of |estimated / measured - 1|, and the worst stage), estimating "
               "the column's run from the row's run and the column's probe, as `make real-plan` would on the column's "
               "machine.")
    if twice:
        caption += (f" On the diagonal, one machine ran the same code twice ({twice['first']['date']} and "
                    f"{twice['second']['date']}): each run estimated from the other, the noise any estimate has here.")
    return [caption, "", *_table(["", *(f"to {kind}" for kind in kinds)], matrix, "l" + "l" * len(kinds)), "",
            "<details><summary>Every stage of every pair</summary>", "",
            *_table(["from → to", "stage", "estimated", "measured", "error"], rows, "llrrr"), "", "</details>"]


ENGINE_NAMES = {"float32/keras": "Keras, float32", "bfloat16/keras": "Keras, bfloat16",
                "float32/litert": "LiteRT (XNNPACK), float32"}


def block_engines(sources: Sources) -> list[str]:
    """The frozen base per image on each engine, per CPU measured, as it is and with oneDNN capped at AVX2."""
    def cell(found: dict) -> str:
        if "failed" in found:
            return "cannot run"
        return (f"{found['wall_ms_per_image']:.1f} ms ({found['cpu_ms_per_image']:.1f} ms CPU, "
                f"{found['cpu_per_wall']:.2f} cores)")

    lines: list[str] = []
    for result in sources["engines"]["machines"]:
        native, capped = result["runs"]["native"], result["runs"]["onednn_avx2"]
        rows = []
        for kind, name in ENGINE_NAMES.items():
            difference = native[kind].get("max_relative_difference")
            rows.append([name, cell(native[kind]), cell(capped[kind]),
                         "reference" if kind == "float32/keras" else f"{difference:.1e}" if difference is not None else ""])
        resolved = {label: "{} on {}".format(*next(found["auto"] for found in runs.values() if "auto" in found))
                    for label, runs in result["runs"].items()}
        lines += [f"Measured {result['date']} on {with_article(cpu(result))}; the base as params.yaml cuts it, "
                  f"{result['images']} images in batches of features.batch_size. `auto` chose {resolved['native']} "
                  f"as the CPU is, {resolved['onednn_avx2']} with oneDNN capped at AVX2.", "",
                  *_table(["engine", "this CPU, an image", "oneDNN capped at AVX2 (`ONEDNN_MAX_CPU_ISA=AVX2`)",
                           "max difference to Keras float32 (relative)"], rows, "lrrr"), ""]
    return lines[:-1]


def block_exports(sources: Sources) -> list[str]:
    """metrics/export/<model>.json: every exported format's size, time per image, difference and AUC."""
    titles = {"keras": "`.keras` (as predict runs it)", "saved_model": "SavedModel", "tflite": "LiteRT float32",
              "tflite_quantized": "LiteRT int8 weights"}
    rows, machines, notes = [], set(), []
    for model, info in sources["exports"].items():
        machines.add(info["machine"])
        notes.append(f"{model}: quantized {info['quantized']}")
        for kind, found in info["formats"].items():
            auc = "n/a" if found["val_auc"] is None else f"{found['val_auc']:.4f}"
            rows.append([model, titles[kind], f"{found['bytes'] / 1e6:.1f} MB", f"{found['ms_per_image']:.2f}",
                         f"{found['max_difference']:.1e}", auc])
    images = {info["validation_images"] for info in sources["exports"].values()}
    return [f"Measured by the export stage on the {' and '.join(map(str, sorted(images)))} validation images, on "
            f"{' and '.join(with_article(machine) for machine in sorted(machines))}; time per image at batch 1, the "
            "median; difference: the largest in P(Male) to the `.keras` model computed in float32.", "",
            *_table(["model", "format", "size", "ms per image", "max difference", "val AUC"], rows, "llrrrr"), "",
            *(f"- {note}" for note in notes)]


BLOCKS: dict[str, Callable[..., list[str]]] = {
    "engines": block_engines,
    "exports": block_exports,
    "bench-kinds": block_bench_kinds,
    "plan-check": block_plan_check,
    "measured": block_measured,
    "bench-stages": block_bench_stages,
    "bench-precision": block_bench_precision,
    "bench-history": block_bench_history,
    "sample-results": block_sample_results,
    "sample-tests": block_sample_tests,
    "seed-flips": block_seed_flips,
    "seed-cost": block_seed_cost,
    "push-sizes": block_push_sizes,
    "timings": block_timings,
    "real-plan": block_real_plan,
}


def block(name: str, args: str, sources: Sources) -> str:
    """A block's generated body: a blank line, its lines, a blank line (Markdown needs them around tables)."""
    if name not in BLOCKS:
        raise RenderError(f"unknown block {name!r}; blocks: {', '.join(BLOCKS)}")
    try:
        options = dict(part.split("=", 1) for part in args.split())
    except ValueError:
        raise RenderError(f"block {name}: arguments are KEY=VALUE, got {args.strip()!r}") from None
    return "\n" + "\n".join(BLOCKS[name](sources, **options)) + "\n\n"

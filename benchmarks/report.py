"""benchmarks/results.md from benchmarks/results.json (python -m benchmarks.bench --render)."""

from __future__ import annotations


def _gib(mb: float) -> str:
    return f"{mb / 1024:.2f} GiB"


def _check(ok: bool) -> str:
    return "yes" if ok else "**no**"


def run_section(run: dict, limits: dict) -> list[str]:
    images, summary, refs = run["images"], run["summary"], run["references"]
    total = sum(images.values())
    m = run["machine"]
    lines = [
        f"## Scale {run['scale']:g}: {total:,} images (train {images['train']:,}, val {images['val']:,}, "
        f"test {images['test']:,})",
        "",
        f"{run['date']}; {m['cpu']} ({', '.join(m.get('flags') or []) or 'flags not recorded'}), {m['cores']} cores, "
        f"{m['memory_gib']} GiB; Python {m['python']}"
        + (f"; oneDNN capped at {m['onednn_max_cpu_isa']} (ONEDNN_MAX_CPU_ISA, emulating an older CPU)"
           if m.get("onednn_max_cpu_isa") else "")
        + (f"; the transfer model's base: {run['engine']['precision']} on {run['engine']['engine']} "
           f"({run['engine']['asked']})" if run.get("engine") else "") + ". "
        f"Corpus written by `dvc repro download` (the sample generator) in {run['download']['wall_s']:.0f} s, "
        "not counted below.",
        "",
        "| stage | wall s | CPU s | CPU/wall | peak RSS (process tree) | DVC s after it | DVC % of the stage |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in run["stages"]:
        ratio = row["cpu_s"] / row["wall_s"] if row["wall_s"] else 0
        lines.append(f"| {row['stage']} | {row['wall_s']:.1f} | {row['cpu_s']:.1f} | {ratio:.2f} | "
                     f"{_gib(row['peak_rss_tree_mb'])} | {row['dvc_s']:.1f} | {row['dvc_pct']:.1f}% |")
    lines += [
        f"| **`dvc repro`, whole** | **{run['repro']['wall_s']:.1f}** | {run['repro']['cpu_s']:.1f} | | | "
        f"start-up {run['dvc_startup_s']:.1f} | |",
        "",
        f"Nothing changed, `dvc repro` again: {run['noop_repro']['wall_s']:.1f} s. "
        f"`dvc repro` wrote {run['repro']['log_bytes']:,} bytes of output (not a terminal).",
        "",
        "**References, measured in the same run**",
        "",
    ]
    naive = refs["naive_prepare"]
    prepare = next(row for row in run["stages"] if row["stage"] == "prepare")
    lines.append(f"- prepare {prepare['wall_s']:.1f} s against a naive one-process PIL loop (open, RGB, resize, PNG "
                 f"at Pillow's defaults) over the same files, {naive['wall_s']:.1f} s: "
                 f"**{summary['prepare_speedup']:.2f}x** ({naive['images']:,} images).")
    bare = {kind: values for kind, values in refs["bare_predict"].items() if isinstance(values, dict)}
    ran = {kind: values for kind, values in bare.items() if "wall_ms_per_image" in values}
    if "features_wall_ms_per_image" in summary and ran:
        parts = ", ".join(f"{'LiteRT float32' if kind == 'litert' else kind} {values['wall_ms_per_image']:.2f} ms "
                          f"({values['cpu_ms_per_image']:.2f} ms CPU)" for kind, values in ran.items())
        cannot = [kind for kind in bare if kind not in ran]
        lines.append(f"- features: {summary['features_wall_ms_per_image']:.2f} ms and "
                     f"{summary['features_cpu_ms_per_image']:.2f} ms CPU per image for the whole stage (read, "
                     f"decode, base, write); the bare base batch by batch on an in-memory array of "
                     f"{next(iter(ran.values())).get('images', 0):,} test images, per image: {parts}"
                     + (f"; cannot run here: {', '.join(cannot)}" if cannot else "") + ".")
    epoch = refs["epoch"]
    lines.append(f"- a baseline epoch ({epoch['images']:,} training images): {epoch['tfrecords_s_per_epoch']:.1f} s from "
                 f"the TFRecords as train@baseline reads them, {epoch['in_memory_s_per_epoch']:.1f} s from numpy arrays "
                 f"in memory (`model.fit(x, y)`): {epoch['ratio']:.2f}x.")
    if run.get("auc"):
        lines += ["", "ROC AUC on this corpus (val / test): " + "; ".join(
            f"{model} {values['val']:.3f} / {values['test']:.3f}" for model, values in run["auc"].items())]
    if len(run.get("precision", {})) > 1:
        lines += ["", "The frozen base's compute precision (`train.transfer.precision`), each a full features stage "
                  "and transfer model on this corpus:", "",
                  "| precision | features wall s | features CPU s | peak RSS | transfer val AUC | transfer test AUC |",
                  "|---|---:|---:|---:|---:|---:|"]
        for precision, values in run["precision"].items():
            lines.append(f"| {precision} | {values['features_wall_s']:.1f} | {values['features_cpu_s']:.1f} | "
                         f"{_gib(values['features_peak_rss_tree_mb'])} | {values['auc']['val']:.3f} | "
                         f"{values['auc']['test']:.3f} |")
    lines += [""] + limits_table(run, limits) + [""]
    return lines


def limits_table(run: dict, limits: dict) -> list[str]:
    """The issue's limits against this run; they are set for scale 1, other scales are for information."""
    summary = run["summary"]
    at_scale = run["scale"] == 1
    rows = [
        (f"whole `dvc repro` <= {limits['pipeline_minutes']} min", f"{summary['pipeline_minutes']:.1f} min",
         summary["pipeline_minutes"] <= limits["pipeline_minutes"]),
        (f"prepare >= {limits['prepare_speedup']:g}x the naive loop", f"{summary['prepare_speedup']:.2f}x",
         summary["prepare_speedup"] >= limits["prepare_speedup"]),
        *dvc_rows(summary, limits),
        *([(f"features <= {limits['features_over_bare']:g}x its engine on images in memory",
            f"{summary['features_over_bare']:.2f}x", summary["features_over_bare"] <= limits["features_over_bare"])]
          if "features_over_bare" in summary else []),
        (f"every stage <= {_gib(limits['peak_rss_mb'])} peak RSS",
         f"{_gib(summary['peak_rss_mb'])} ({summary['peak_rss_stage']})", summary["peak_rss_mb"] <= limits["peak_rss_mb"]),
    ]
    if not at_scale:
        return ["| limit (set for scale 1; this run is for information) | measured |", "|---|---:|"] + [
            f"| {limit} | {measured} |" for limit, measured, _ in rows]
    return ["| limit (at scale 1) | measured | met |", "|---|---:|---|"] + [
        f"| {limit} | {measured} | {_check(ok)} |" for limit, measured, ok in rows]


def rss_by_scale(runs: list[dict]) -> list[str]:
    """Peak RSS per stage at every scale measured: flat means it does not grow with the data."""
    if len(runs) < 2:
        return []
    stages = [row["stage"] for row in runs[-1]["stages"]]
    lines = ["## Peak RSS against scale", "",
             "| stage | " + " | ".join(f"scale {run['scale']:g}" for run in runs) + " |",
             "|---|" + "---:|" * len(runs)]
    for stage in stages:
        cells = []
        for run in runs:
            row = next((row for row in run["stages"] if row["stage"] == stage), None)
            cells.append(_gib(row["peak_rss_tree_mb"]) if row else "")
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    return lines + [""]


def markdown(results: dict, limits: dict) -> str:
    runs = results["runs"]
    lines = ["# Benchmark results", "",
             "Written by `make bench` (`python -m benchmarks.bench --scale S`); see docs/benchmark.md. "
             "Wall and CPU seconds are the stage's command; peak RSS is the sum over its processes, sampled "
             "every 0.1 s. DVC's share of a stage is the time from the end of its command to the start of "
             "the next one: hashing and caching its outputs, then checking the next stage.", ""]
    for run in sorted(runs, key=lambda run: -run["scale"]):
        lines += run_section(run, limits)
    lines += rss_by_scale(sorted(runs, key=lambda run: run["scale"]))
    return "\n".join(lines).rstrip() + "\n"


def dvc_rows(summary: dict, limits: dict) -> list[tuple[str, str, bool]]:
    """DVC's share by the rule in force: after each stage at most max(15% of it, 2 s), and 5% of the
    whole run. A run recorded before the rule has only the per-stage percentage: judged by 15% alone."""
    if "worst_dvc_allowance_ratio" not in summary:
        return [(f"DVC <= {limits['dvc_overhead_pct']}% of every stage",
                 f"worst {summary['worst_dvc_overhead_pct']:.1f}% ({summary['worst_dvc_overhead_stage']})",
                 summary["worst_dvc_overhead_pct"] <= limits["dvc_overhead_pct"])]
    return [(f"DVC after each stage <= max({limits['dvc_overhead_pct']}% of it, {limits['dvc_overhead_floor_s']:g} s)",
             f"worst {summary['worst_dvc_allowance_ratio']:.2f}x its allowance ({summary['worst_dvc_allowance_stage']})",
             summary["worst_dvc_allowance_ratio"] <= 1),
            (f"DVC <= {limits['dvc_whole_pct']}% of the whole run", f"{summary['dvc_whole_pct']:.1f}%",
             summary["dvc_whole_pct"] <= limits["dvc_whole_pct"])]

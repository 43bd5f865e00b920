"""How often a one-seed verdict differs from the five-seed one: every model trained once per seed, all
scored on the same images, each pair's verdict from one seed against the verdict over all seeds.

    python -m benchmarks.seeds                         # seeds 2021 (the workspace's run) and 1, 2, 3, 4
    python -m benchmarks.seeds --seeds 2021 7 8        # others

Each seed other than the workspace's is one `dvc exp run --temp -n seed-<S> -S train.<model>.seed=<S>`
for every model (DVC's run cache restores the stages a seed does not touch: download to features);
the workspace is left as it is. The per-image predictions of every run are read back from DVC
(dvc.api, at the experiment's commit). Per pair and split:

- one seed: DeLong's test of the two models' runs with that seed, Holm-adjusted over that run's
  family (both tests, every pair, both splits), exactly as compare judges a `make run`;
- all seeds: stages/analysis/statistics.py seed_aware_delong (the spread over seeds and DeLong's
  image variance), Holm-adjusted over the pairs and splits.

A verdict is "first better", "second better" or "no difference" at 5%; a flip is a one-seed verdict
other than the all-seed one. Writes benchmarks/seeds.json with this machine (CPU model and flags).
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import time
from datetime import date
from pathlib import Path
from typing import Sequence

import pandas as pd

from benchmarks.machine import machine
from stages.analysis.statistics import delong_test, holm_adjusted, mcnemar_test, seed_aware_delong
from stages.common.config import EVALUATED_SPLITS, load_params

RESULTS = Path(__file__).resolve().parent / "seeds.json"
LEVEL = 0.05


def run_seed(seed: int, models: list[str]) -> str:
    """dvc exp run --temp for one seed of every model; returns the experiment's commit."""
    name = f"seed-{seed}"
    settings = [part for model in models for part in ("-S", f"train.{model}.seed={seed}")]
    subprocess.run(["dvc", "exp", "run", "--temp", "-n", name, *settings], check=True)
    shown = json.loads(subprocess.run(["dvc", "exp", "show", "--json"], check=True, capture_output=True,
                                      text=True).stdout)
    for commit in shown:
        for experiment in commit.get("experiments") or []:
            if experiment.get("name") == name:
                return experiment["revs"][0]["rev"]
    raise SystemExit(f"dvc exp show lists no experiment {name}")


def predictions_at(rev: str | None, model: str, split: str) -> pd.DataFrame:
    """data/evaluate/<model>/predictions_<split>.csv of the workspace (rev None) or an experiment."""
    path = f"data/evaluate/{model}/predictions_{split}.csv"
    if rev is None:
        return pd.read_csv(path)
    import dvc.api

    return pd.read_csv(io.StringIO(dvc.api.read(path, rev=rev)))


def verdict(difference: float | None, p_value: float | None) -> str:
    if p_value is None or p_value >= LEVEL:
        return "no difference"
    return "first better" if difference > 0 else "second better"


def one_seed_verdicts(runs: dict[str, dict[str, pd.DataFrame]], pairs, positive: str) -> dict:
    """(split, first, second) -> verdict, as compare judges one run (Holm over its 12 tests)."""
    keys, found, raw = [], [], []
    for split in EVALUATED_SPLITS:
        for first, second in pairs:
            labels, a, b = aligned(runs, split, first, second, positive)
            auc = delong_test(labels, a, b)
            accuracy = mcnemar_test(labels, a >= 0.5, b >= 0.5)
            keys.append((split, first, second))
            found.append(auc)
            raw += [auc["p_value"], accuracy["p_value"]]
    adjusted = holm_adjusted(raw)[0::2]
    return {key: verdict(auc["difference"], p) for key, auc, p in zip(keys, found, adjusted)}


def aligned(runs, split, first, second, positive):
    both = runs[first][split].merge(runs[second][split], on="file", suffixes=("_a", "_b"), validate="1:1")
    labels = (both["actual_a"] == positive).to_numpy().astype(int)
    return labels, both["probability_a"].to_numpy(), both["probability_b"].to_numpy()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[2021, 1, 2, 3, 4],
                        help="training seeds; 2021, the default seed, is read from the workspace's run")
    args = parser.parse_args(argv)
    params = load_params()
    models, positive = params.model_names, params.prepare.classes[1]
    pairs = [(first, second) for index, second in enumerate(models) for first in models[index + 1:]]
    started = time.monotonic()
    revs = {seed: None if seed == 2021 else run_seed(seed, models) for seed in args.seeds}
    training_s = round(time.monotonic() - started)
    runs = {seed: {model: {split: predictions_at(rev, model, split) for split in EVALUATED_SPLITS}
                   for model in models} for seed, rev in revs.items()}
    singles = {seed: one_seed_verdicts(by_model, pairs, positive) for seed, by_model in runs.items()}
    rows, keys, tests = [], [], []
    for split in EVALUATED_SPLITS:
        for first, second in pairs:
            per_seed = [aligned(runs[seed], split, first, second, positive) for seed in args.seeds]
            labels = per_seed[0][0]
            tests.append(seed_aware_delong(labels, [a for _, a, _ in per_seed], [b for _, _, b in per_seed]))
            keys.append((split, first, second))
    adjusted = holm_adjusted([test["p_value"] for test in tests])
    for (split, first, second), test, p in zip(keys, tests, adjusted):
        pooled = verdict(test["difference"], p)
        each = [singles[seed][(split, first, second)] for seed in args.seeds]
        rows.append({"split": split, "pair": f"{first} - {second}", "auc_difference_mean": round(test["difference"], 4),
                     "auc_difference_seed_sd": round(test["seed_standard_deviation"], 4),
                     "standard_error": round(test["standard_error"], 4), "p_value": test["p_value"],
                     "p_holm": p, "verdict": pooled, "one_seed_verdicts": each,
                     "flips": sum(v != pooled for v in each)})
    flips = sum(row["flips"] for row in rows)
    result = {"date": date.today().isoformat(), "machine": machine(), "seeds": args.seeds, "level": LEVEL,
              "rows": rows, "flips": flips, "comparisons": len(rows) * len(args.seeds),
              "experiments_wall_s": training_s}
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    for row in rows:
        print(f"{row['split']:4} {row['pair']:22} {row['auc_difference_mean']:+.3f} "
              f"± {row['auc_difference_seed_sd']:.3f} p_holm {row['p_holm']:.3g} {row['verdict']:14} "
              f"flips {row['flips']}/{len(args.seeds)}")
    print(f"{flips} of {result['comparisons']} one-seed verdicts differ from the all-seed one -> {RESULTS}")


if __name__ == "__main__":
    main()

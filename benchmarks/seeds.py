"""How often a one-seed verdict differs from the five-seed one: the pipeline run with five training
seeds (params.yaml's seeds), each pair's verdict from one seed's runs against compare's over all five.

    python -m benchmarks.seeds                         # seeds 2021, 1, 2, 3, 4
    python -m benchmarks.seeds --seeds 2021 7 8        # others

One `dvc exp run --temp -n seeds-<n> -S 'seeds=[...]'`: train@<model>-<seed> and evaluate@<model>-<seed>
for every model and seed, then compare over them all (DVC's run cache restores what is already
cached: download to features, and the workspace's own seed's runs); the workspace is left as it is.
What the experiment wrote is read back from DVC (dvc.api, at its commit). Per pair and split:

- all seeds: compare's own verdict in the experiment's metrics/comparison.json (DeLong over seeds:
  the spread between the runs and DeLong's image variance; Holm over its twelve tests);
- one seed: stages.compare's paired tests of that seed's runs alone (DeLong, McNemar), Holm-adjusted
  over their twelve, exactly as compare judges a run with one seed.

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
from stages.common.config import EVALUATED_SPLITS, load_params
from stages.compare import adjust_for_multiplicity, paired_tests
from stages.contracts.comparison import Comparison, PairedTest

RESULTS = Path(__file__).resolve().parent / "seeds.json"
LEVEL = 0.05


def run_seeds(seeds: list[int]) -> str:
    """dvc exp run --temp with params.yaml's seeds set to `seeds`; returns the experiment's commit."""
    name = f"seeds-{len(seeds)}"
    subprocess.run(["dvc", "exp", "run", "--temp", "-n", name, "-S", f"seeds=[{','.join(map(str, seeds))}]"],
                   check=True)
    shown = json.loads(subprocess.run(["dvc", "exp", "show", "--json"], check=True, capture_output=True,
                                      text=True).stdout)
    for commit in shown:
        for experiment in commit.get("experiments") or []:
            if experiment.get("name") == name:
                return experiment["revs"][0]["rev"]
    raise SystemExit(f"dvc exp show lists no experiment {name}")


def read_at(rev: str, path: str) -> str:
    import dvc.api

    return dvc.api.read(path, rev=rev)


def verdict(test: PairedTest) -> str:
    p_value = test.roc_auc_p_adjusted
    if p_value is None or p_value >= LEVEL:
        return "no difference"
    return "first better" if test.roc_auc_difference > 0 else "second better"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[2021, 1, 2, 3, 4], help="training seeds")
    args = parser.parse_args(argv)
    params = load_params()
    models, positive, reference = params.model_names, params.prepare.classes[1], params.compare.reference
    started = time.monotonic()
    rev = run_seeds(args.seeds)
    experiment_s = round(time.monotonic() - started)
    pooled = Comparison.model_validate_json(read_at(rev, str(Comparison.path)))
    singles = {}
    for seed in args.seeds:
        predictions = {model: {split: [pd.read_csv(io.StringIO(read_at(
            rev, f"data/evaluate/{model}/{seed}/predictions_{split}.csv")))] for split in EVALUATED_SPLITS}
            for model in models}
        singles[seed], _ = adjust_for_multiplicity(paired_tests(predictions, reference, positive))
    rows = []
    for split in EVALUATED_SPLITS:
        for name, test in pooled.tests[split].items():
            overall = verdict(test)
            each = [verdict(singles[seed][split][name]) for seed in args.seeds]
            rows.append({"split": split, "pair": f"{test.first} - {test.second}",
                         "auc_difference_mean": test.roc_auc_difference,
                         "auc_difference_seed_sd": test.roc_auc_seed_standard_deviation,
                         "standard_error": test.roc_auc_standard_error, "p_value": test.roc_auc_p_value,
                         "p_holm": test.roc_auc_p_adjusted, "verdict": overall, "one_seed_verdicts": each,
                         "flips": sum(v != overall for v in each)})
    flips = sum(row["flips"] for row in rows)
    result = {"date": date.today().isoformat(), "machine": machine(), "seeds": args.seeds, "level": LEVEL,
              "rows": rows, "flips": flips, "comparisons": len(rows) * len(args.seeds),
              "experiments_wall_s": experiment_s, "experiment": rev}
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    for row in rows:
        print(f"{row['split']:4} {row['pair']:22} {row['auc_difference_mean']:+.3f} "
              f"± {row['auc_difference_seed_sd']:.3f} p_holm {row['p_holm']:.3g} {row['verdict']:14} "
              f"flips {row['flips']}/{len(args.seeds)}")
    print(f"{flips} of {result['comparisons']} one-seed verdicts differ from the all-seed one -> {RESULTS}")


if __name__ == "__main__":
    main()

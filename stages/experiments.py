"""experiments: every experiment of this commit side by side, what it changed and each model's ROC AUC.

    facegender compare          # make compare

`dvc exp show` shows every metric, param and dependency, each dependency a 36-character hash: far
wider than a terminal. This reads the same data (`dvc exp show --json`) and prints one line per
experiment: its name, the params it changed against the commit, and each model's validation and test
ROC AUC (metrics/<model>/<seed>.json: the mean over the experiment's seeds, and how many with more
than one), at most WIDTH columns. `dvc exp show --only-changed` has the rest.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from typing import Any, Iterator, Sequence

from stages.analysis.terminal import text_table
from stages.common import cli
from stages.common.config import METRICS_DIR, PARAMS_FILE, load_params
from stages.common.errors import UserError

WIDTH = 120
NAME_WIDTH = 24     # longer experiment names are cut, with an ellipsis


def cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def rows_of(shown: list[dict]) -> Iterator[tuple[str, dict]]:
    """(name, data) for the workspace, each commit and each of its experiments, as `dvc exp show --json` lists them."""
    for commit in shown:
        rev = commit["rev"]
        yield commit.get("name") or (rev if rev == "workspace" else rev[:7]), commit.get("data") or {}
        for experiment in commit.get("experiments") or []:
            for rev in experiment.get("revs") or []:
                yield rev.get("name") or rev["rev"][:7], rev.get("data") or {}


def params_of(data: dict) -> dict[str, Any]:
    return flatten(((data.get("params") or {}).get(str(PARAMS_FILE)) or {}).get("data") or {})


def auc_pair(data: dict, model: str) -> str:
    """'0.872/0.764': the model's validation and test ROC AUC, the mean over its runs (one per seed,
    ' (5 seeds)' after it when more than one), '-' where missing."""
    folder = f"{(METRICS_DIR / model).as_posix()}/"      # metrics/<model>/<seed>.json: Scores, one per seed
    runs = [(found or {}).get("data") or {} for path, found in sorted((data.get("metrics") or {}).items())
            if path.startswith(folder) and path.endswith(".json") and "/" not in path[len(folder):]]

    def value(split: str) -> str:
        found = [(scores.get(split) or {}).get("auc") for scores in runs]
        return "-" if not found or None in found else f"{sum(found) / len(found):.3f}"

    seeds = f" ({len(runs)} seeds)" if len(runs) > 1 else ""
    return f"{value('val')}/{value('test')}{seeds}"


def changes(params: dict[str, Any], reference: dict[str, Any]) -> str:
    """The params that differ from the reference's, `key=value` each."""
    keys = sorted(set(params) | set(reference))
    return ", ".join(f"{key}={params.get(key)}" for key in keys if params.get(key) != reference.get(key)) or "-"


def comparison_lines(shown: list[dict], models: Sequence[str], width: int = WIDTH) -> list[str]:
    """One line per experiment (the workspace and commits included), at most `width` columns."""
    rows = list(rows_of(shown))
    reference = next((params_of(data) for name, data in rows if name != "workspace"), {})
    table = [[cut(name, NAME_WIDTH), changes(params_of(data), reference), *(auc_pair(data, model) for model in models)]
             for name, data in rows]
    header = ["experiment", "changed (against the commit)", *(f"{model} AUC val/test" for model in models)]
    fixed = sum(max(len(row[i]) for row in [header, *table]) + 2 for i in (0, *range(2, len(header))))
    room = max(width - fixed, 12)
    for row in table:
        row[1] = cut(row[1], room)
    return text_table(header, table, right=[False, False, *(True for _ in models)])


def dvc_exp_show() -> list[dict]:
    """`dvc exp show --json`, parsed."""
    try:
        done = subprocess.run(["dvc", "exp", "show", "--json"], capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
        raise UserError("dvc: not found; activate the environment (source .venv/bin/activate) or run make compare") \
            from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"dvc exp show failed: {last}")
    return json.loads(done.stdout)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=WIDTH, help=f"the most columns to use (default {WIDTH})")
    args = parser.parse_args(argv)
    models = load_params().model_names
    print("\n".join(comparison_lines(dvc_exp_show(), models, args.width)))


if __name__ == "__main__":
    cli.run(main, stage=False)

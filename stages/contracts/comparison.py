"""What compare hands over: metrics/comparison.json (every model against the reference, the paired tests)
and plots/compare/roc_<split>.csv (every model's ROC points on one chart)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Optional

import pandas as pd
from pydantic import BaseModel, model_validator

from stages.common.config import METRICS_DIR, PLOTS_DIR
from stages.contracts.evaluation import ModelMetrics
from stages.contracts.jsonfile import JsonFile
from stages.contracts.tables import write_csv


class PairedTest(BaseModel):
    """Two models on the same images (stages/analysis/statistics.py). Differences are first minus
    second. With one seed: DeLong's test of their ROC AUCs, McNemar's exact test of their accuracies.
    With several (every model trained once per seed): the mean difference over seeds, each test's
    variance the seeds' spread plus the images' (seed_aware_delong, seed_aware_accuracy)."""

    first: str
    second: str
    images: int
    seeds: int = 1                                          # training runs per model the test saw
    roc_auc_test: str = "DeLong"                           # "DeLong" | "DeLong over seeds"
    accuracy_test: str = "McNemar"                         # "McNemar" | "paired accuracy over seeds"
    roc_auc_difference: Optional[float]
    roc_auc_standard_error: Optional[float]
    roc_auc_p_value: Optional[float]                       # None: DeLong's test undefined here
    roc_auc_test_undefined: Optional[str] = None            # why (one class only; a class of one image)
    roc_auc_seed_standard_deviation: Optional[float] = None  # the AUC difference's spread over seeds
    accuracy_difference: float
    accuracy_standard_error: Optional[float] = None        # over seeds and images (None: McNemar)
    accuracy_seed_standard_deviation: Optional[float] = None
    only_first_right: int                                   # images only first got right, summed over seeds
    only_second_right: int
    accuracy_p_value: float
    # Holm-adjusted over every paired test in the file (Comparison.adjustment); None in files written
    # before compare adjusted, and for an undefined test.
    roc_auc_p_adjusted: Optional[float] = None
    accuracy_p_adjusted: Optional[float] = None

    @model_validator(mode="after")
    def _no_p_value_without_a_reason(self) -> "PairedTest":
        """A missing p-value always says why, so the report and verdict never show a bare gap."""
        if (self.roc_auc_p_value is None) != (self.roc_auc_test_undefined is not None):
            raise ValueError("roc_auc_test_undefined gives the reason exactly when roc_auc_p_value is null")
        return self


class Adjustment(BaseModel):
    """How the paired tests' p-values were adjusted for their number, and over which family."""

    method: str            # "holm"
    family: str            # which tests were adjusted together
    tests: int             # how many p-values the family held


class SeedSpread(BaseModel):
    """One model's metric over its training runs, one value per seed (in Comparison.seeds' order)."""

    values: list[Optional[float]]
    standard_deviation: Optional[float]                     # None: one seed, or a value undefined
    low: Optional[float]
    high: Optional[float]


class Comparison(JsonFile):
    """metrics/comparison.json (git): per split and metric, every model's value (its mean over the
    seeds) and, for each other model, "<model>_minus_<reference>"; the spread over seeds; per split, a
    paired test for every pair of models, "<first>_vs_<second>" (the reference second); and per split
    the majority-class rate, what always answering its larger class scores (every model sees the same
    images)."""

    written_by: ClassVar[str] = "compare"
    path: ClassVar[Path] = METRICS_DIR / "comparison.json"

    reference: str
    models: dict[str, str]                                  # name -> description
    seeds: list[int] = []                                   # params.yaml's seeds: one run per model each
    spread: dict[str, dict[str, dict[str, SeedSpread]]] = {}  # split -> metric -> model -> over seeds
    val: dict[str, dict[str, Optional[float]]]
    test: dict[str, dict[str, Optional[float]]]
    tests: dict[str, dict[str, PairedTest]] = {}            # split -> "<first>_vs_<second>" -> test
    adjustment: Optional[Adjustment] = None
    majority_rate: dict[str, Optional[float]] = {}          # split -> the larger class's share ({} before)

    def paired(self, split: str, first: str, second: str) -> Optional[PairedTest]:
        """The test of `first` against `second` on a split, whichever way round it was stored."""
        return self.tests.get(split, {}).get(f"{first}_vs_{second}") or self.tests.get(split, {}).get(
            f"{second}_vs_{first}")

    def split(self, name: str) -> dict[str, dict[str, Optional[float]]]:
        return getattr(self, name)

    def over_seeds(self, model: str, run: ModelMetrics) -> ModelMetrics:
        """One run's metrics as a model's summary: with several seeds, each metric its mean over the seeds
        (this file's tables), without the one run's intervals; with one seed, the run's own."""
        if len(self.seeds) < 2:
            return run
        return run.model_copy(update={split: run.split(split).model_copy(update={
            "interval": {}, **{metric: values[model] for metric, values in self.split(split).items()}})
            for split in ("val", "test")})


# All models' ROC points on one chart per split (DVC template roc_by_model).
ROC_BY_MODEL_COLUMNS = ("model", "fpr", "tpr")


def roc_by_model_file(split: str, root: Path = PLOTS_DIR / "compare") -> Path:
    """plots/compare/roc_<split>.csv (git)."""
    return Path(root) / f"roc_{split}.csv"


def write_roc_by_model(split: str, table: pd.DataFrame, root: Path = PLOTS_DIR / "compare") -> None:
    write_csv(roc_by_model_file(split, root), table, ROC_BY_MODEL_COLUMNS)

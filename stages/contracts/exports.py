"""exports/<model>/ (DVC cache) and metrics/export/<model>.json (git): a trained model exported for
serving elsewhere, and what was measured of each format (size, speed, agreement with the .keras model,
validation AUC). export.json travels with the files: predict reads its classes from it."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Optional

from pydantic import BaseModel

from stages.common.config import METRICS_DIR
from stages.contracts.jsonfile import JsonFile

# Beside models/, not in it: the report depends on models/, and an export's timings change at every run.
EXPORTS_DIR = Path("exports")
EXPORT_INFO = "export.json"
SAVED_MODEL = "saved_model"                      # a folder: TensorFlow SavedModel, signature "serve"
FLOAT32_FILE = "model.tflite"                    # LiteRT (TFLite), float32
QUANTIZED_FILE = "model_quantized.tflite"        # LiteRT, weights in int8 (dynamic-range quantization)
FORMAT_FILES = {"saved_model": SAVED_MODEL, "tflite": FLOAT32_FILE, "tflite_quantized": QUANTIZED_FILE}


class FormatResult(BaseModel):
    """One format: its file (relative to the export folder), its size, its time per image at batch 1 (the
    median), its largest difference in P(class 1) to the float32 .keras model on validation, its AUC there."""

    file: str
    bytes: int
    ms_per_image: float
    max_difference: float
    val_auc: Optional[float]


class ExportInfo(JsonFile):
    """What an export holds and what was measured of it (exports/<model>/export.json, and the same in
    metrics/export/<model>.json)."""

    written_by: ClassVar[str] = "export"

    model: str
    seed: int
    description: str                    # the .keras model's, e.g. its precision
    classes: list[str]
    threshold: float                    # evaluate.threshold when exported: P(classes[1]) at or above it
    input: str                          # what the exports take
    machine: str                        # the CPU the times were measured on
    validation_images: int
    formats: dict[str, FormatResult]    # keras (the .keras file as predict runs it), and every exported format
    quantized: str                      # kept, or why not

    @staticmethod
    def folder(name: str) -> Path:
        return EXPORTS_DIR / name

    @staticmethod
    def metrics_path(name: str, root: Path = METRICS_DIR / "export") -> Path:
        return root / f"{name}.json"

    @staticmethod
    def beside(path: Path) -> Path:
        """The export.json of an exported file or SavedModel folder: in the export folder holding it."""
        return Path(path).parent / EXPORT_INFO

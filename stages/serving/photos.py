"""What the page shows for one photo, the core of stages/serve.py: a file in, a JSON-able dict out.

Every face the detector finds (predict's detection, stages/images/faces.py), boxed in the photo's
upright pixels; per face, each model's P(class 1), its verdict at evaluate.threshold and the heat map
of where it looked (stages/analysis/heatmaps.py). Each face is cropped and resized as predict crops
it, and scored on the engine its model was trained with, so the page gives predict's numbers.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from stages.images.faces import DETECT_MAX_SIDE, crop_face, detect_faces
from stages.images.reading import open_rgb, square_pixels
from stages.modelkit.prediction import FaceOptions
from stages.modelkit.trained import TrainedModel

# The heat maps are drawn at this size on the page (the models see 100 px): enlarged here, smoothly.
HEATMAP_SIDE = 160


@dataclass(frozen=True)
class PhotoOptions:
    """How a photo is read and judged: prepare.max_pixels, predict's face options, evaluate.threshold."""

    max_pixels: int
    faces: FaceOptions
    threshold: float


def png_data_uri(pixels: np.ndarray, side: int = HEATMAP_SIDE) -> str:
    """uint8 RGB pixels as a PNG data: URI, enlarged to side x side (the page shows it without a request)."""
    image = Image.fromarray(pixels).resize((side, side), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def verdict(probability: float, classes: Sequence[str], threshold: float) -> str:
    """The class the model predicts: classes[1] when P(classes[1]) >= threshold, as evaluate labels."""
    return classes[1] if probability >= threshold else classes[0]


def analyse_photo(path: Path, models: Sequence[TrainedModel], explainers: Sequence, options: PhotoOptions) -> dict:
    """{width, height, faces: [{box: [left, top, width, height], confidence, models: [{model, probability,
    verdict, heatmap}]}]} for the photo at `path`; box and size in the upright photo's pixels (scaled down
    when a big JPEG decodes in draft mode). Raises UnreadableImage for what is no image or over the budget."""
    from stages.analysis.heatmaps import overlay

    photo = open_rgb(path, options.max_pixels, draft=DETECT_MAX_SIDE)
    found = detect_faces(photo, options.faces.min_confidence)
    faces = [{"box": [face.left, face.top, face.width, face.height], "confidence": face.confidence, "models": []}
             for face in found]
    if found:
        crops = [crop_face(photo, face, options.faces.face_crop) for face in found]
        for trained, explainer in zip(models, explainers):
            pixels = np.stack([square_pixels(crop, trained.size) for crop in crops]).astype(np.float32)
            probabilities = np.asarray(trained.runner.predict_on_batch(pixels), np.float64).reshape(-1)
            maps = explainer(pixels) if explainer is not None else [None] * len(pixels)
            for face, image, probability, heat in zip(faces, pixels, probabilities, maps):
                face["models"].append({
                    "model": trained.name,
                    "probability": round(float(probability), 4),
                    "verdict": verdict(float(probability), trained.classes, options.threshold),
                    "heatmap": png_data_uri(overlay(image, heat)) if heat is not None else None,
                })
    return {"width": photo.width, "height": photo.height, "faces": faces}

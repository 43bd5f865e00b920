"""A model exported by the export stage, loaded to predict: a TensorFlow SavedModel folder or a LiteRT
(.tflite) file, behind what predict uses of a Keras model (input_shape, output_shape, predict_on_batch).
Both take float32 RGB 0-255 pixels [batch, size, size, 3], preprocessing inside, and give P(class 1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stages.contracts.exports import QUANTIZED_FILE


def is_exported(path: Path) -> bool:
    """A .tflite file, or a folder holding a SavedModel (saved_model.pb)."""
    path = Path(path)
    return path.suffix == ".tflite" or (path.is_dir() and (path / "saved_model.pb").is_file())


class ExportedModel:
    """An exported model with Keras's predict surface."""

    def __init__(self, path: Path, threads: int):
        self.path = Path(path)
        if self.path.suffix == ".tflite":
            from stages.modelkit.engines import LiteRTRunner

            self._run = LiteRTRunner.from_file(self.path, threads)
            self.input_shape, self.output_shape = self._run.shapes()
        else:
            import tensorflow as tf

            # The loaded object owns the variables: it must live as long as its function.
            self._loaded = tf.saved_model.load(str(self.path))
            serve = self._loaded.serve
            self._run = lambda batch: serve(tf.constant(batch)).numpy()
            self.input_shape = tuple(serve.input_signature[0].shape.as_list())
            self.output_shape = (None, 1)

    @property
    def quantized(self) -> bool:
        return self.path.name == QUANTIZED_FILE

    def predict_on_batch(self, batch) -> np.ndarray:
        return np.asarray(self._run(np.ascontiguousarray(np.asarray(batch, np.float32))))

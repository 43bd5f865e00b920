"""Where a frozen Keras network runs: Keras itself (oneDNN on CPUs, CUDA on GPUs), or LiteRT.

    run = batch_runner(extractor, "litert", threads=2)   # numpy batch in, numpy batch out

LiteRT is the maintained successor of TensorFlow Lite's interpreter (the `ai-edge-litert` package;
`tf.lite.Interpreter` is deprecated). The model is exported with Keras's own LiteRT exporter
(`keras.Model.export(format="litert")`) and run by the interpreter with its XNNPACK delegate, which on
capped CPUs computed VGG16 in float32 up to 25% faster than Keras did, and on others slower
(docs/models.md#precision); it runs the features stage's base when train.transfer.engine is litert.
Its outputs match Keras float32 within float32 rounding (max relative difference ~1e-6).

Used by the features stage (the frozen base over every split), predict (the same base on new
photos, so that the two agree on the engine) and exported .tflite files (stages/modelkit/exported.py),
never by train or evaluate: those read cached features.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from stages.common.errors import UserError
from stages.common.machine import litert_installed

ENGINES = ("keras", "litert")


class LiteRTRunner:
    """A LiteRT model run batch by batch on `threads` cores (XNNPACK): from a Keras model (of_model, exported
    on the way) or a .tflite file (from_file, the export stage's)."""

    def __init__(self, content: bytes, threads: int):
        if not litert_installed():
            raise UserError("engine litert: the ai-edge-litert package is not installed; install requirements.txt "
                            "(pip install ai-edge-litert==2.3.0) or use the keras engine")
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_content=content, num_threads=max(1, threads))
        self._input = self.interpreter.get_input_details()[0]["index"]
        self._output = self.interpreter.get_output_details()[0]["index"]
        self._batch: tuple[int, ...] | None = None

    @classmethod
    def of_model(cls, model, threads: int) -> "LiteRTRunner":
        with tempfile.TemporaryDirectory(prefix="facegender-litert-") as folder:
            path = Path(folder) / "model.tflite"
            model.export(str(path), format="litert", verbose=False)
            return cls(path.read_bytes(), threads)

    @classmethod
    def from_file(cls, path: Path, threads: int) -> "LiteRTRunner":
        return cls(Path(path).read_bytes(), threads)

    def shapes(self) -> tuple[tuple, tuple]:
        """(input shape, output shape) with None for the batch, as Keras's input_shape and output_shape."""
        signature = self.interpreter.get_input_details()[0]
        output = self.interpreter.get_output_details()[0]
        return ((None, *map(int, signature["shape"][1:])), (None, *map(int, output["shape"][1:])))

    def __call__(self, batch) -> np.ndarray:
        batch = np.ascontiguousarray(np.asarray(batch, dtype=np.float32))
        if self._batch != batch.shape:
            self.interpreter.resize_tensor_input(self._input, list(batch.shape))
            self.interpreter.allocate_tensors()
            self._batch = batch.shape
        self.interpreter.set_tensor(self._input, batch)
        self.interpreter.invoke()
        # A copy: the interpreter reuses its output buffer on the next call.
        return np.array(self.interpreter.get_tensor(self._output))


def batch_runner(model, engine: str, threads: int, keras_runner: Callable | None = None) -> Callable:
    """A function from a batch of inputs to the model's outputs on `engine`: for keras, `keras_runner`
    (default model.predict_on_batch), for litert a LiteRTRunner."""
    if engine == "litert":
        return LiteRTRunner.of_model(model, threads)
    if engine != "keras":
        raise UserError(f"engine {engine!r}: use one of {', '.join(ENGINES)}")
    return keras_runner or model.predict_on_batch


class FrontOnEngine:
    """A saved model with everything before its last layer (the transfer model's frozen base) on LiteRT,
    the last layer (its head) in Keras: what predict runs when the features stage ran the base on
    LiteRT, so that predict's probabilities are the ones evaluate scored (`predict_on_batch`, as Keras)."""

    def __init__(self, model, threads: int):
        import keras

        # The model is a chain (input, preprocessing, base, head): the front is the same layers, called anew
        # (a nested model's own .output may belong to another model that shares it).
        inputs = keras.Input(shape=model.input_shape[1:])
        front = inputs
        for layer in model.layers[1:-1]:
            front = layer(front, training=False)
        self.front = LiteRTRunner.of_model(keras.Model(inputs, front), threads)
        self.last = model.layers[-1]
        self.input_shape, self.output_shape = model.input_shape, model.output_shape   # what predict checks

    def predict_on_batch(self, batch) -> np.ndarray:
        return np.asarray(self.last(self.front(batch), training=False))


def on_engine(model, engine: str, threads: int):
    """The model as `engine` runs it (training.json's details say which ran the base): itself for keras,
    and also for litert where ai-edge-litert is not installed (Keras float32 computes the same within
    float32 rounding), with a note on stderr."""
    if engine != "litert":
        return model
    if not litert_installed():
        print("note: the features ran this model's base on LiteRT, which is not installed here (pip install "
              "ai-edge-litert==2.3.0); running it in Keras float32, equal within float32 rounding", file=sys.stderr)
        return model
    return FrontOnEngine(model, threads)

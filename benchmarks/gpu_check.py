"""make gpu-check GPU=1: the pipeline's GPU path end to end, in about a minute, for whoever has a GPU.

Checks, on random images (no data needed), each with its time:
1. TensorFlow sees a GPU (else: exit 2 with what to do);
2. the features stage's frozen VGG16 base runs on it in float16 (train.transfer.precision: float16,
   the GPU choice): output dtype float16, computed on the GPU;
3. one epoch of the baseline CNN trains on it through the pipeline's own strategy (distribute.strategy:
   auto: every GPU when there are two or more) and compile settings;
4. float16 and float32 bases agree on the features (relative difference under 1%).
Exit 0 when every check passes, 1 when one fails (its line says which).
"""

from __future__ import annotations

import sys
import time

import numpy as np

from stages.common import cli, distribute


def check(name: str, passed: bool, detail: str) -> bool:
    print(f"{'ok  ' if passed else 'FAIL'} {name}: {detail}", flush=True)
    return passed


def main() -> int:
    cli.quiet_tensorflow()
    import keras
    import tensorflow as tf

    from stages.modelkit.fitting import compile_model
    from stages.modelkit import vgg16
    from stages.models import baseline

    gpus = tf.config.list_logical_devices("GPU")
    if not gpus:
        print("gpu-check: TensorFlow sees no GPU. Install the CUDA build with `make env GPU=1` (tensorflow[and-cuda]) "
              "and check the driver with `nvidia-smi`; on a CPU machine there is nothing to check.", file=sys.stderr)
        return 2
    results = [check("GPU visible", True, ", ".join(gpu.name for gpu in gpus))]
    images = np.random.default_rng(0).integers(0, 256, size=(256, 100, 100, 3)).astype("float32")

    strategy = distribute.make_strategy("auto")
    with strategy.scope():
        half = vgg16.feature_extractor((100, 100, 3), "none", "block4_pool", "float16")
    started = time.monotonic()
    features = half.predict(images, batch_size=64, verbose=0)
    elapsed = time.monotonic() - started
    probe = half(images[:2], training=False)
    results.append(check("features in float16 on the GPU", features.dtype == np.float16 and "GPU" in probe.device,
                         f"{features.dtype}, {probe.device}, {1000 * elapsed / len(images):.2f} ms an image "
                         f"({strategy.num_replicas_in_sync} replica(s))"))

    full = vgg16.feature_extractor((100, 100, 3), "none", "block4_pool", "float32")
    reference = full.predict(images[:64], batch_size=64, verbose=0)
    difference = np.abs(features[:64].astype(np.float32) - reference).mean() / (np.abs(reference).mean() + 1e-12)
    results.append(check("float16 base agrees with float32", difference < 0.01, f"mean relative difference {difference:.4f}"))

    labels = (images.mean(axis=(1, 2, 3)) > 127.5).astype("float32")
    with strategy.scope():
        model = baseline.make_model((100, 100, 3))
        compile_model(model, "adam", 1e-3)
    keras.utils.set_random_seed(1)
    started = time.monotonic()
    history = model.fit(images, labels, batch_size=32, epochs=1, verbose=0)
    elapsed = time.monotonic() - started
    on_gpu = all("GPU" in variable.value.device for variable in model.trainable_variables)
    results.append(check("baseline epoch on the GPU", on_gpu and np.isfinite(history.history["loss"][0]),
                         f"loss {history.history['loss'][0]:.3f}, {elapsed:.1f} s for {len(images)} images "
                         "(first epoch: includes tracing)"))
    print("gpu-check: " + ("every check passed" if all(results) else "FAILED"))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())

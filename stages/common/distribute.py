"""Where training and the features stage run: a tf.distribute strategy from params (distribute.strategy),
and how many CPU threads a stage may take when experiments run side by side.

auto          MirroredStrategy over the local GPUs when there are two or more, else the default
              strategy (one device: the GPU if any, else the CPU).
default       the default strategy, whatever the machine has.
mirrored      MirroredStrategy over every local GPU (or the CPU): synchronous data parallelism.
multi_worker  MultiWorkerMirroredStrategy over the machines TF_CONFIG names (TensorFlow's standard
              cluster variable): every worker runs the same stage command; the chief alone writes
              outputs (is_chief).

The global batch size stays the params value: each of N replicas gets batch_size / N examples of
every step, and the gradients are averaged, so one step is the same step on 1 or N replicas.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Callable

from stages.common.errors import UserError

if TYPE_CHECKING:
    import numpy as np
    import tensorflow as tf

STRATEGIES = ("auto", "default", "mirrored", "multi_worker")
# How long a worker waits for the others in one collective operation before failing (seconds).
COLLECTIVE_TIMEOUT_S = 300
# Experiments run side by side (`make queue JOBS=N` sets it for `dvc queue start --jobs N`): each
# stage then takes its share of the CPU cores, not all of them.
JOBS_VARIABLE = "FACEGENDER_JOBS"


def cpu_count() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cpu_share() -> int:
    """CPU cores this stage may use: all of them, divided by FACEGENDER_JOBS when it is set."""
    cores = cpu_count()
    raw = os.environ.get(JOBS_VARIABLE, "1")
    try:
        jobs = int(raw)
    except ValueError:
        raise UserError(f"{JOBS_VARIABLE}={raw!r}: expected the number of experiments run at once, e.g. 2") from None
    if jobs < 1:
        raise UserError(f"{JOBS_VARIABLE}={raw!r}: expected 1 or more")
    return max(1, cores // jobs)


def limit_threads() -> int:
    """Give TensorFlow this stage's share of the cores (call before any TensorFlow op runs); return it."""
    import tensorflow as tf

    threads = cpu_share()
    if JOBS_VARIABLE in os.environ:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    return threads


def task_in_cluster() -> tuple[str, int, bool] | None:
    """(task type, index, whether the cluster has a "chief" task) from TF_CONFIG, or None when
    TF_CONFIG is unset. Raises UserError if it is not the JSON TensorFlow expects."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return None
    try:
        config = json.loads(raw)
        task = config["task"]
        cluster = config["cluster"]
        if not isinstance(cluster, dict) or not cluster:
            raise KeyError("cluster")
        return str(task["type"]), int(task["index"]), "chief" in cluster
    except (ValueError, KeyError, TypeError):
        raise UserError('TF_CONFIG is not valid: expected JSON like {"cluster": {"worker": ["host1:port", '
                        '"host2:port"]}, "task": {"type": "worker", "index": 0}}') from None


def is_chief() -> bool:
    """Whether this process writes the outputs: always, except for the non-chief workers of a cluster
    (the task of type "chief", or worker 0 when the cluster has no chief, is the chief)."""
    task = task_in_cluster()
    if task is None:
        return True
    kind, index, has_chief = task
    return kind == "chief" or (not has_chief and kind == "worker" and index == 0)


def make_strategy(name: str, local: bool = False) -> "tf.distribute.Strategy":
    """The strategy distribute.strategy names (see the module's docstring). local: this machine's
    devices only (multi_worker becomes auto): for work with nothing to share between machines, like
    the features stage, which the chief runs alone."""
    import tensorflow as tf

    if name not in STRATEGIES:
        raise UserError(f"distribute.strategy: '{name}' is not one of {', '.join(STRATEGIES)}; fix it in params.yaml")
    if local and name == "multi_worker":
        name = "auto"
    if name == "auto":
        # Physical, not logical devices: listing logical ones starts the runtime, after which a
        # multi-worker strategy can no longer set up its collective ops.
        name = "mirrored" if len(tf.config.list_physical_devices("GPU")) > 1 else "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if task_in_cluster() is None:
        raise UserError("distribute.strategy is multi_worker but TF_CONFIG is not set: set it on every worker "
                        "(docs/scaling.md), or use -S distribute.strategy=auto")
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=COLLECTIVE_TIMEOUT_S)
    strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    _reduce_structures(strategy)
    return strategy


def predict_each_row_once(model) -> "Callable[[tf.Tensor], np.ndarray]":
    """model.predict_on_batch with each batch split between the replicas of the strategy the model was
    built under (a local one, as make_strategy(local=True) gives). predict_on_batch hands a plain tensor
    whole to every replica: on two GPUs each computes every image, and the rows come back twice. Here
    replica i takes the i-th of N near-equal consecutive parts, and the parts come back in order."""
    import numpy as np
    import tensorflow as tf

    strategy = model.distribute_strategy
    replicas = strategy.num_replicas_in_sync
    if replicas == 1:
        return model.predict_on_batch

    @tf.function(reduce_retracing=True)
    def on_replicas(parts):
        return strategy.run(lambda rows: model(rows, training=False), args=(parts,))

    @tf.function(reduce_retracing=True)
    def on_one_device(rows):
        return model(rows, training=False)

    def predict(batch) -> np.ndarray:
        rows = np.asarray(batch)
        # Fewer rows than replicas (a split's last batch): TF's convolutions mishandle an empty part.
        if len(rows) < replicas:
            return np.asarray(on_one_device(rows))
        # Cut on the host: each replica's device receives its own part only.
        parts = np.array_split(rows, replicas)
        distributed = strategy.experimental_distribute_values_from_function(
            lambda context: tf.convert_to_tensor(parts[context.replica_id_in_sync_group]))
        outputs = strategy.experimental_local_results(on_replicas(distributed))
        return np.concatenate([np.asarray(part) for part in outputs])

    return predict


def _reduce_structures(strategy: "tf.distribute.Strategy") -> None:
    """Keras 3's fit calls strategy.reduce on a whole (x, y) batch and on scalar logs with axis=0;
    MultiWorkerMirroredStrategy's reduce takes one value, and axis=0 fails on a scalar
    (keras-team/keras#20585: fit fails under this strategy without it). Reduce each value on its
    own; a scalar has no axis to reduce, only replicas."""
    import tensorflow as tf

    reduce = strategy.reduce

    def rank(value) -> int:
        parts = getattr(value, "values", None)
        return (parts[0] if parts else value).shape.rank

    def reduce_each(reduce_op, value, axis=None):
        return tf.nest.map_structure(lambda one: reduce(reduce_op, one, axis=axis if rank(one) else None), value)

    strategy.reduce = reduce_each

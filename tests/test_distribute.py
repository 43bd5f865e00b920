"""Where work runs (stages/common/distribute.py), in this process: the chief, one-line errors for a bad
TF_CONFIG, the strategy `auto` picks on whatever devices this machine has, each job's share of the cores.
The multi-worker training itself runs in tests/e2e/test_multi_worker.py."""

from __future__ import annotations

import json
import os

import pytest

from stages.common import distribute
from stages.common.errors import UserError


def test_chief_is_worker_zero_or_the_chief_task(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert distribute.is_chief()
    workers = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    for task, chief in (({"type": "worker", "index": 0}, True), ({"type": "worker", "index": 1}, False)):
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": workers, "task": task}))
        assert distribute.is_chief() is chief
    with_chief = {"chief": ["127.0.0.1:3"], **workers}
    for task, chief in (({"type": "chief", "index": 0}, True), ({"type": "worker", "index": 0}, False)):
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": with_chief, "task": task}))
        assert distribute.is_chief() is chief


def test_bad_tf_config_and_missing_tf_config_are_one_line_errors(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(UserError, match="TF_CONFIG is not valid"):
        distribute.is_chief()
    monkeypatch.delenv("TF_CONFIG")
    with pytest.raises(UserError, match="TF_CONFIG is not set"):
        distribute.make_strategy("multi_worker")


def test_auto_takes_every_gpu_from_two_up_else_the_one_device():
    """Holds on any machine: no GPU or one (CI, a laptop), or several (a GPU server)."""
    import tensorflow as tf

    gpus = len(tf.config.list_physical_devices("GPU"))
    expected = gpus if gpus >= 2 else 1
    assert distribute.make_strategy("auto").num_replicas_in_sync == expected
    assert distribute.make_strategy("multi_worker", local=True).num_replicas_in_sync == expected   # becomes auto
    assert distribute.make_strategy("default").num_replicas_in_sync == 1


def test_cpu_share_divides_the_cores_by_the_jobs(monkeypatch):
    cores = len(os.sched_getaffinity(0))
    monkeypatch.delenv(distribute.JOBS_VARIABLE, raising=False)
    assert distribute.cpu_share() == cores
    monkeypatch.setenv(distribute.JOBS_VARIABLE, "2")
    assert distribute.cpu_share() == max(1, cores // 2)
    monkeypatch.setenv(distribute.JOBS_VARIABLE, "two")
    with pytest.raises(UserError, match="FACEGENDER_JOBS"):
        distribute.cpu_share()

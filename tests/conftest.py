"""Fixtures shared by the test modules (plain helper functions are in tests/helpers.py), and the line
between the two tiers.

`make test-fast` runs every test not marked e2e, in pytest's own processes only; `make test` runs them all. A
test is e2e when it runs `dvc` or the project's code (a stage, predict, a benchmark) in a process of
its own: everything under tests/e2e/ is marked so here, and a test elsewhere carries the marker. The
guard below holds the line: a test without the marker that starts such a process fails, saying so.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time as real_time
from pathlib import Path

import pytest

from stages.common.config import Params, load_params
from tests.fake_kaggle import (KEY, REFRESH_TOKEN, SPLITS, TEST_FILES, TOKEN, TRAINVAL_FILES, USERNAME, FakeKaggle,
                               make_archive, make_tree)
from tests.helpers import ROOT, raw_repo_params, write_params

E2E = "e2e"
E2E_FOLDER = Path(__file__).parent / "e2e"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_FOLDER in Path(item.path).parents:
            item.add_marker(E2E)


def runs_project_code(args) -> bool:
    """Whether a command line runs dvc, or Python on the project's code (-m stages.x, -c "...stages...")."""
    words = [os.fspath(word) for word in ([args] if isinstance(args, (str, bytes, os.PathLike)) else list(args))]
    if not words:
        return False
    if Path(words[0]).name in ("dvc", "make"):
        return True
    for flag, value in zip(words, words[1:]):
        if flag == "-m" and value.split(".")[0] in ("stages", "benchmarks", "dvc"):
            return True
        if flag == "-c" and ("stages" in value or "benchmarks" in value):
            return True
    return False


class _Guard:
    """Which tier the running test belongs to (its setup, call and teardown, module fixtures included)."""

    e2e = True


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _Guard.e2e = E2E in item.keywords


@pytest.fixture(autouse=True, scope="session")
def _fast_tests_start_no_project_process():
    original = subprocess.Popen.__init__

    def guarded(self, args, *more, **options):
        if not _Guard.e2e and runs_project_code(args):
            raise AssertionError(f"this test runs {' '.join(map(str, args if not isinstance(args, str) else [args]))!r} "
                                 "in a process of its own: mark it @pytest.mark.e2e or move it to tests/e2e/")
        original(self, args, *more, **options)

    subprocess.Popen.__init__ = guarded
    yield
    subprocess.Popen.__init__ = original


@pytest.fixture(scope="session")
def repo_params() -> Params:
    """The repository's params.yaml, parsed and validated (frozen: safe to share)."""
    return load_params(ROOT / "params.yaml")


@pytest.fixture
def raw_params() -> dict:
    """The repository's params.yaml as a plain dict, this test's own copy to edit."""
    return raw_repo_params()


# --- the fake Kaggle (tests/fake_kaggle.py) and a machine without credentials ---------------------

@pytest.fixture
def kaggle_params(raw_params) -> dict:
    """The repository's params.yaml (this test's copy) set to download from Kaggle, with SPLITS."""
    raw_params["download"]["source"] = "kaggle"
    raw_params["prepare"]["splits"] = SPLITS
    return raw_params


class _NoSleep:
    """The client's `time` module, minus the retry back-off sleeps."""

    def __getattr__(self, name):
        return getattr(real_time, name)

    @staticmethod
    def sleep(seconds):
        pass


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    """No credentials from this machine: empty HOME, no KAGGLE_* variables, client config in tmp."""
    for key in list(os.environ):
        if key.startswith("KAGGLE_") or key in ("VERBOSE", "VERBOSE_OUTPUT"):
            monkeypatch.delenv(key)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(home / ".kaggle"))
    from stages.images import kaggle_client

    KaggleApi = kaggle_client.kaggle_api_class()
    # The client fixes its config path and arguments when first imported: point them here.
    monkeypatch.setattr(KaggleApi, "config_dir", str(home / ".kaggle"))
    monkeypatch.setattr(KaggleApi, "config", str(home / ".kaggle" / "kaggle.json"))
    monkeypatch.setattr(KaggleApi, "args", [])
    monkeypatch.setattr(sys.modules["kaggle.api.kaggle_api_extended"], "time", _NoSleep())
    return home


@pytest.fixture
def fake(clean_env, kaggle_params, monkeypatch, tmp_path):
    """A fake Kaggle serving both datasets, the client pointed at it, cwd = a project with old data. It knows
    the legacy key, TOKEN and the OAuth login's REFRESH_TOKEN; anonymous requests are refused."""
    params = kaggle_params
    server = FakeKaggle(username=USERNAME, key=KEY, token=TOKEN, refresh_token=REFRESH_TOKEN)
    slugs = {name: entry["slug"] for name, entry in params["download"]["datasets"].items()}
    server.add_dataset(slugs["trainval"], make_archive(make_tree(tmp_path / "src-trainval", TRAINVAL_FILES)))
    server.add_dataset(slugs["test"], make_archive(make_tree(tmp_path / "src-test", TEST_FILES)))
    from kagglesdk import kaggle_env

    with server:
        for env in kaggle_env.KaggleEnv:  # every environment, so nothing can reach the real Kaggle
            monkeypatch.setitem(kaggle_env._env_to_endpoint, env, server.url)
        work = tmp_path / "work"
        work.mkdir()
        monkeypatch.chdir(work)
        write_params(params)
        for name in ("trainval", "test"):
            old = work / "data" / "raw" / name
            (old / "old-layout").mkdir(parents=True)
            (old / "MARKER").write_text(f"previous {name}\n")
            (old / "old-layout" / "x.bin").write_bytes(bytes(range(256)))
        server.slugs = slugs
        yield server


@pytest.fixture
def creds(monkeypatch):
    monkeypatch.setenv("KAGGLE_USERNAME", USERNAME)
    monkeypatch.setenv("KAGGLE_KEY", KEY)

"""Fixtures shared by the test modules (plain helper functions are in tests/helpers.py)."""

from __future__ import annotations

import pytest

from stages.config import Params, load_params
from tests.helpers import ROOT, raw_repo_params


@pytest.fixture(scope="session")
def repo_params() -> Params:
    """The repository's params.yaml, parsed and validated (frozen: safe to share)."""
    return load_params(ROOT / "params.yaml")


@pytest.fixture
def raw_params() -> dict:
    """The repository's params.yaml as a plain dict, this test's own copy to edit."""
    return raw_repo_params()

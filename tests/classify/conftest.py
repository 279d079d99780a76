"""Session fixtures: the session's one run of the shared sample and one model trained on it.

Both come from tests/fixtures/sample.py (`shared_sample_run`, `shared_trained_model`): made once
for the whole session, across pytest-xdist's workers too (tests/pipeline, tests/test_api.py and
tests/serve use them as well).
"""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def sample_run(shared_sample_run) -> Path:
    """The output folder of `orchard.run` on the shared sample."""
    return shared_sample_run.output


@pytest.fixture(scope="session")
def trained_model(shared_trained_model) -> Path:
    """A model folder trained on the sample run with the default settings."""
    return shared_trained_model

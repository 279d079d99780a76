"""Session fixtures: one `orchard run` of the shared sample and one model trained on it.

Both are made at most once per test session (tests/serve uses them too, through
`sample_run_dir` and `trained_model_dir` below).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict

import pytest

import orchard
from orchard.classify.train import TrainConfig, train
from tests.conftest import MODEL_FILE, SAMPLE

_MADE: Dict[str, Path] = {}


def sample_run_dir(spark, tmp_path_factory) -> Path:
    """The output of `orchard.run` on the shared sample (made once per session)."""
    if "run" not in _MADE:
        output = tmp_path_factory.mktemp("sample-run") / "run"
        orchard.run(orchard.RunConfig(input=str(SAMPLE), output=str(output), model_path=str(MODEL_FILE)),
                    spark=spark)
        _MADE["run"] = output
    return _MADE["run"]


def trained_model_dir(spark, tmp_path_factory) -> Path:
    """A model folder trained on the sample run with the default settings (made once per session)."""
    if "model" not in _MADE:
        run = sample_run_dir(spark, tmp_path_factory)
        output = tmp_path_factory.mktemp("sample-model") / "model"
        train(spark, TrainConfig(run=str(run), output=str(output), model_path=str(MODEL_FILE)))
        _MADE["model"] = output
    return _MADE["model"]


@pytest.fixture(scope="session")
def sample_run(spark, tmp_path_factory) -> Path:
    return sample_run_dir(spark, tmp_path_factory)


@pytest.fixture(scope="session")
def trained_model(spark, tmp_path_factory) -> Path:
    return trained_model_dir(spark, tmp_path_factory)

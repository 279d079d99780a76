"""The report's figures (orchard.analysis.figures): one PNG each, a colour for every phase and stage."""
from __future__ import annotations

import pytest

from orchard.analysis.figures import FIGURES, PHASE_COLOURS, STAGE_COLOURS, render_all, stage_rows
from orchard.analysis.metrics import PHASES, analyse
from orchard.names import STAGE_FEATURIZE, STAGE_LIST, STAGE_RECONCILE, STAGE_SPARK_START, STAGES
from tests.analysis.events import APP_START_MS, app_events, app_of

PNG = b"\x89PNG\r\n\x1a\n"


def test_every_phase_and_pipeline_stage_has_a_colour():
    assert set(PHASE_COLOURS) == set(PHASES)
    assert set(STAGE_COLOURS) == set(STAGES)


@pytest.mark.parametrize("stage", [STAGE_FEATURIZE, STAGE_RECONCILE])
def test_render_all_writes_one_png_per_figure(tmp_path, stage):
    t0 = APP_START_MS / 1000
    record = {  # a run.json of the pipeline's stages, so the figures draw their windows too
        "seconds": {STAGE_SPARK_START: 0.1, STAGE_LIST: 0.1, stage: 2.0, "total": 2.6},
        "stage_started_at": {STAGE_SPARK_START: t0, STAGE_LIST: t0 + 0.05, stage: t0 + 0.1},
        "counts": {"images": 40},
    }
    analysis = analyse(app_of(app_events(n_tasks=4, stage=stage)), record)
    paths = render_all(analysis, tmp_path / "img")
    assert [p.name for p in paths] == [name for name, _, _ in FIGURES]
    for path in paths:
        assert path.read_bytes()[:8] == PNG, path


def test_overlapping_stages_get_rows_of_their_own():
    windows = [("list", 0.0, 1.0), ("featurize", 1.0, 5.0), ("write_features", 5.0, 8.0),
               ("write_errors", 5.1, 6.0), ("write_model", 5.2, 7.0), ("next", 8.0, 9.0)]
    assert stage_rows(windows) == [0, 0, 0, 1, 2, 0]
    assert stage_rows([("a", 0.0, 1.0), ("b", 0.5, 2.0), ("c", 1.5, 3.0)]) == [0, 1, 0]
    assert stage_rows([]) == []

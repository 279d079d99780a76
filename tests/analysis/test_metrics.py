"""Run metrics and the verdict (orchard.analysis.metrics), on synthetic event logs."""
from __future__ import annotations

import pytest

from orchard.analysis.metrics import (
    PHASE_OF_ORCHARD_STAGE, PHASES, analyse, assign_slots, gaps_between,
)
from orchard.names import STAGE_RECONCILE, STAGES
from tests.analysis.events import app_events, app_of, task_end


def test_utilisation_skew_and_lanes():
    app = app_of(app_events(n_tasks=4))
    analysis = analyse(app)
    stage = analysis.stages[0]
    assert stage.phase == "featurize" and stage.n_tasks == 4
    assert stage.skew == pytest.approx(1.0)
    # 4 core-seconds of tasks on 2 cores during 2.6 s of application
    assert analysis.busy_core_s == pytest.approx(4.0)
    assert analysis.available_core_s == pytest.approx(2 * 2.6)
    assert analysis.utilisation == pytest.approx(4.0 / 5.2)
    assert {lane for _, lane in analysis.slots.values()} == {0, 1}


def test_lanes_never_exceed_the_cores_when_a_finish_is_logged_late():
    events = app_events(n_tasks=0)
    # the driver logs a finish 5 ms after the next task on that core starts
    events[5:5] = [task_end(0, 1_000_100, 1005), task_end(1, 1_000_100, 1000), task_end(2, 1_001_100, 1000)]
    analysis = analyse(app_of(events))
    assert max(lane for _, lane in analysis.slots.values()) == 1


def test_a_task_takes_the_lane_that_frees_first_only_at_the_core_limit():
    events = app_events(n_tasks=0)
    # both cores' finishes logged 5 ms late: no lane is free when task 2 starts
    events[5:5] = [task_end(0, 1_000_100, 1005), task_end(1, 1_000_100, 1010), task_end(2, 1_001_100, 1000)]
    tasks = app_of(events).tasks
    assert assign_slots(tasks, {"driver": 2})[2] == ("driver", 0)
    assert assign_slots(tasks)[2] == ("driver", 2)  # without a limit: a third lane


def test_a_straggler_is_named_and_warm_up_is_not_a_straggler():
    start = 1_000_100
    straggler = app_events(n_tasks=0)
    straggler[5:5] = [task_end(i, start + 1000 * (i // 2), 1000, records=10) for i in range(4)] + \
        [task_end(4, start + 2000, 6000, records=10), task_end(5, start + 2000, 1000, records=10)]
    analysis = analyse(app_of(straggler))
    keys = [f.key for f in analysis.findings]
    assert "straggler" in keys and analysis.main_stage.skew == pytest.approx(6.0)
    assert "Next: one straggler partition" in analysis.verdict

    warm = app_events(n_tasks=0)
    warm[5:5] = [task_end(0, start, 3000), task_end(1, start, 3000)] + \
        [task_end(2 + i, start + 3000 + 1000 * (i // 2), 1000) for i in range(4)]
    analysis = analyse(app_of(warm))
    keys = [f.key for f in analysis.findings]
    assert "warmup" in keys and "straggler" not in keys
    assert analysis.main_stage.first_wave_median_s == pytest.approx(3.0)
    assert analysis.main_stage.tail_idle_core_s == pytest.approx(0.0)


def test_too_few_partitions_for_the_cores():
    events = app_events(n_tasks=0)
    events[2]["Executor Info"]["Total Cores"] = 8
    events[5:5] = [task_end(i, 1_000_100, 2000) for i in range(3)]
    analysis = analyse(app_of(events))
    assert "partitions" in [f.key for f in analysis.findings]


def test_gaps_between():
    assert gaps_between([(0, 1), (0.5, 2), (4, 5)], 0, 7) == [(2, 4), (5, 7)]
    assert gaps_between([(0, 1), (1.2, 2)], 0, 2) == []


def test_every_pipeline_stage_has_a_phase():
    assert set(PHASE_OF_ORCHARD_STAGE) == set(STAGES)
    assert set(PHASE_OF_ORCHARD_STAGE.values()) <= set(PHASES)


def test_the_reconcile_stage_is_reported_as_reconcile():
    analysis = analyse(app_of(app_events(n_tasks=4, stage=STAGE_RECONCILE)))
    assert [s.phase for s in analysis.stages] == ["reconcile"]
    assert analysis.core_s_by_phase == {"reconcile": pytest.approx(4.0)}
    split = {part: seconds for part, seconds, _ in analysis.time_split}
    assert split["reconcile (error rows)"] == pytest.approx(4.0) and split["other Spark jobs"] == 0

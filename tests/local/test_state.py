"""The local cluster's state file (orchard.local.state)."""
from __future__ import annotations

from pathlib import Path

from orchard.local.state import STATE_DIR_ENV, StateFile, default_state_dir


def test_the_state_dir_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path / "from-env"))
    assert default_state_dir() == tmp_path / "from-env"
    monkeypatch.delenv(STATE_DIR_ENV)
    assert default_state_dir() == Path.home() / ".local" / "state" / "orchard" / "local"


def test_state_round_trips_and_an_unreadable_file_reads_as_none(tmp_path):
    state = StateFile(tmp_path / "box")
    assert state.load() is None
    with state.locked():
        state.save({"version": 1, "processes": []})
    assert state.load() == {"version": 1, "processes": []}
    assert not list((tmp_path / "box").glob("*.tmp"))
    state.path.write_text("{not json")
    assert state.load() is None
    state.remove()
    state.remove()  # twice: nothing to remove is fine
    assert not state.path.exists()

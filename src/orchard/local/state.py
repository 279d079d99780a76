"""The local cluster's state file (`<state_dir>/state.json`): what runs, on which ports, with
which settings; written atomically, and one `up`/`down` at a time per state directory."""
from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

log = logging.getLogger(__name__)

STATE_DIR_ENV = "ORCHARD_STATE_DIR"
STATE_FILE = "state.json"


def default_state_dir() -> Path:
    """$ORCHARD_STATE_DIR, default ~/.local/state/orchard/local."""
    return Path(os.environ.get(STATE_DIR_ENV) or Path.home() / ".local" / "state" / "orchard" / "local")


class StateFile:
    """state.json in `state_dir`: `load()` (None when absent or unreadable), `save(state)`,
    `remove()`, and `locked()` around a change."""

    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        self.path = state_dir / STATE_FILE

    def load(self) -> Optional[Dict[str, Any]]:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except ValueError:
            log.warning("ignoring the unreadable state file %s", self.path)
            return None

    def save(self, state: Dict[str, Any]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(tmp, self.path)

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One `up`/`down` at a time per state directory (an exclusive flock on .lock)."""
        import fcntl

        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

"""Points of a run where a crash test kills the driver, and the run's id."""
from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import uuid

log = logging.getLogger(__name__)

KILL_AT_ENV = "ORCHARD_TEST_KILL_AT"  # test hook: the named point where the driver SIGKILLs itself
# start (the output's state read), featurize (after each chunk, or the one-go featurize), write
# (the PCA fitted, nothing written), commit (the errors table and the PCA model written, just
# before the features table's commit)
KILL_POINTS = ("start", "featurize", "write", "commit")


def kill_point(name: str) -> None:
    """For crash tests: SIGKILL this process when $ORCHARD_TEST_KILL_AT is `name`."""
    if os.environ.get(KILL_AT_ENV) == name:
        log.warning("test hook: killing the driver at %s", name)
        os.kill(os.getpid(), signal.SIGKILL)


def new_run_id() -> str:
    """A sortable unique id: UTC time + 6 hex digits, e.g. 20261130T180102-1a2b3c."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]

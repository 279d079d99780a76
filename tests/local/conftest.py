"""The one local cluster of a test session, for every cluster test (tests/local/test_*.py marked
`cluster`): `local_box` (2 workers of 1 core, 1g, SeaweedFS S3, HDFS; free ports, a temporary
state dir, the tests' download cache).

Starting a box costs ~20-50 s and it holds ~2.5 GB, so the cluster modules share this one
instead of each starting its own: each uses it through a module fixture (`using_box`) and keeps
to its own S3 bucket and HDFS folder (test_cluster_integration: orchard-it, test_grow_cluster:
orchard-grow, test_field_inputs_s3: orchard-field). They are all marked
`pytest.mark.xdist_group("cluster")`, so that under pytest-xdist (`--dist loadgroup`) they run on
one worker and the box is made once; a test that uses the box without that mark is refused at
collection.

Stopping it is tested: the test marked `last_on_local_box` (test_cluster_integration's
test_down_stops_everything_it_started) is moved after every other test that uses the box, and
stops it with `down_stops_everything_it_started`; the session's teardown runs the same checks
again (on a box already stopped, or on a running one when that test did not run), so a process
`down` leaves behind fails the run (an error in the teardown) either way.
"""
from __future__ import annotations

import pytest

from tests.local.boxes import BOX_SETTINGS, down_stops_everything_it_started, running_box
from tests.plugins.scheduling import group_of

BOX_FIXTURE = "local_box"
CLUSTER_GROUP = "cluster"
LAST_MARK = "last_on_local_box"


@pytest.fixture(scope="session")
def local_box(tmp_path_factory, model_file):
    """The session's box: {"cluster", "status", "env", "state_dir"} (modules: `using_box`)."""
    with running_box(tmp_path_factory.mktemp("local-box"), model_file, **BOX_SETTINGS) as box:
        yield box
        down_stops_everything_it_started(box)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{LAST_MARK}: runs after every other test that uses the shared "
                                       f"local cluster ({BOX_FIXTURE}), because it stops it")


def uses_box(item: pytest.Item) -> bool:
    return BOX_FIXTURE in getattr(item, "fixturenames", ())


@pytest.hookimpl(trylast=True)  # after tests/plugins/scheduling.py's sort, which keeps a group's order
def pytest_collection_modifyitems(config: pytest.Config, items) -> None:
    for item in items:
        if uses_box(item):
            if item.get_closest_marker("xdist_group") is None or group_of(item) != CLUSTER_GROUP:
                raise pytest.UsageError(
                    f"{item.nodeid} uses the shared local cluster ({BOX_FIXTURE}) but is not marked "
                    f"pytest.mark.xdist_group({CLUSTER_GROUP!r}): under pytest-xdist it could run on "
                    "another worker and start a second box")
    last = [item for item in items if item.get_closest_marker(LAST_MARK)]
    users = [item for item in items if uses_box(item) and item not in last]
    if not last or not users:
        return
    after = users[-1]
    for item in last:
        items.remove(item)
    at = items.index(after) + 1
    items[at:at] = last

"""How the suite is shared among pytest-xdist's workers (`-n N --dist loadgroup`).

- A test without an `xdist_group` mark is grouped with its module, so that a module's fixtures
  are made once, on one worker (xdist's plain `loadgroup` would deal such tests out one by one).
- The groups that take longest run first (longest-processing-time-first scheduling), so that no
  worker is handed a module of several minutes at the end while the others are idle: `FIRST`
  lists them, slowest first, from the durations CI prints (`--durations`). xdist's own
  reordering (by number of tests) must stay off: `--no-loadscope-reorder`.

Without xdist the same order applies; each group's tests stay together and in their order.
"""
from __future__ import annotations

from typing import List

import pytest

# Groups (an `xdist_group` name or a module's path), slowest first.
FIRST = (  # fresh-machine CI of 2026-12-07, one process: seconds per group
    "tests/test_container.py",  # 174 s: debootstrap + buildah, mostly downloads (overlaps the rest)
    "cluster",  # 657 s in three clusters: one local cluster (Spark standalone, SeaweedFS, HDFS)
    "tests/pipeline/test_commit.py",  # 120 s: driver JVMs killed and started again
    "tests/table/test_forget.py",  # ~180 s (estimate, 2026-12-08): runs, forgets, a vacuum, killed forgets
    "tests/table/test_convert_and_concurrency.py",  # ~110 s: the released code's run, two runs at once
    "tests/test_fresh_machine.py",  # 96 s: a wheel into a new virtual environment, the demo
    "tests/test_api.py",  # 84 s
    "tests/cloud/test_node_set.py",  # 68 s: the Python 3.9 node set runs the pipeline
    "tests/spark/test_progress.py",  # 55 s
    "tests/analysis/test_eventlog.py",  # 46 s: a standalone cluster
    "tests/pipeline/test_incremental.py",  # 46 s
)


def group_of(item: pytest.Item) -> str:
    """The item's xdist group: its `xdist_group` mark's name, else its module's path."""
    mark = item.get_closest_marker("xdist_group")
    if mark is not None:
        return mark.args[0] if mark.args else mark.kwargs.get("name", "default")
    return item.nodeid.split("::", 1)[0]


def rank(group: str) -> int:
    return FIRST.index(group) if group in FIRST else len(FIRST)


def pytest_configure(config: pytest.Config) -> None:
    # xdist registers the mark itself; without xdist (e.g. a plain virtual environment) too
    config.addinivalue_line("markers", "xdist_group(name): run these tests on one pytest-xdist worker")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which turns the marks into node ids
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: List[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(group_of(item)))
    items.sort(key=lambda item: rank(group_of(item)))  # stable: each group keeps its order

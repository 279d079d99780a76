"""CI's rules for the suite itself (tests/plugins): an unlisted skip fails the run, a listed
one does not; every test is in an xdist group, the slowest groups first."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.fixtures import processes
from tests.plugins import scheduling, skips

SUITE = '''
import pytest

def test_runs():
    assert True

def test_needs_a_tool():
    pytest.skip("no frobnicator on this machine")
'''


def run_suite(folder: Path, allow_list: str, *options: str, ci: str = "") -> subprocess.CompletedProcess:
    (folder / "test_tiny.py").write_text(SUITE)
    (folder / "allowed.txt").write_text(allow_list)
    code = ("import sys, pytest; from pathlib import Path; from tests.plugins import skips; "
            f"skips.ALLOW_LIST = Path({str(folder / 'allowed.txt')!r}); "
            f"sys.exit(pytest.main(['-q', '-p', 'tests.plugins.skips', '-p', 'no:cacheprovider', "
            f"{str(folder)!r}, *sys.argv[1:]]))")
    env = {**os.environ, "CI": ci, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code, *options], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=120)


def test_an_unlisted_skip_fails_in_ci_and_is_named(tmp_path):
    result = run_suite(tmp_path, "# nothing allowed\n", ci="true")
    assert result.returncode == 1, result.stdout
    assert "skips not on the allow-list" in result.stdout
    assert "test_tiny.py::test_needs_a_tool: no frobnicator on this machine" in result.stdout


def test_a_listed_skip_passes_and_outside_ci_nothing_is_enforced(tmp_path):
    listed = run_suite(tmp_path, "no frobnicator  # the frobnicator is not packaged for Debian\n", ci="true")
    assert listed.returncode == 0, listed.stdout
    assert "1 passed, 1 skipped" in listed.stdout
    outside = run_suite(tmp_path, "", ci="")
    assert outside.returncode == 0, outside.stdout
    strict = run_suite(tmp_path, "", "--strict-skips", ci="")
    assert strict.returncode == 1, strict.stdout


def test_an_allow_list_entry_needs_its_reason(tmp_path):
    (tmp_path / "bad.txt").write_text("no frobnicator\n")
    with pytest.raises(pytest.UsageError, match="needs a reason"):
        skips.load_allow_list(tmp_path / "bad.txt")
    (tmp_path / "bad.txt").write_text("no (frob  # unbalanced\n")
    with pytest.raises(pytest.UsageError, match="not a regular expression"):
        skips.load_allow_list(tmp_path / "bad.txt")


def test_the_repository_allow_list_is_short_and_each_entry_says_why():
    entries = skips.load_allow_list()
    assert len(entries) <= 5
    assert all(len(why) >= 20 for _, why in entries)


def test_every_test_has_a_group_and_the_slowest_come_first(request):
    items = request.session.items
    assert all(item.get_closest_marker("xdist_group") for item in items)
    ranks = [scheduling.rank(scheduling.group_of(item)) for item in items]
    assert ranks == sorted(ranks)
    assert scheduling.group_of(request.node) == "tests/test_ci_rules.py"


GROUPED = '''
import os

import pytest

@pytest.mark.parametrize("i", range(6))
def test_where(i):
    with open("where.txt", "a") as out:
        out.write(f"{os.environ['PYTEST_XDIST_WORKER']} {__name__}\\n")
'''


def test_xdist_keeps_each_module_on_one_worker(tmp_path):
    """Real pytest-xdist, 2 workers, the scheduling plugin: each of two modules of 6 tests runs
    on one worker (xdist's nodeids carry the group, `@<module>`): module fixtures are made once."""
    for name in ("test_one.py", "test_two.py"):
        (tmp_path / name).write_text(GROUPED)
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.plugins.scheduling", "-p", "no:cacheprovider",
                             "-n", "2", "--dist", "loadgroup", "--no-loadscope-reorder", "-v", str(tmp_path)],
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "12 passed" in result.stdout
    workers = {}
    for line in (tmp_path / "where.txt").read_text().splitlines():
        worker, module = line.split()
        workers.setdefault(module, set()).add(worker)
    assert sorted(workers) == ["test_one", "test_two"], result.stdout[-3000:]
    assert all(len(names) == 1 for names in workers.values()), workers
    assert "test_one.py::test_where[0]@" in result.stdout  # the group reached xdist's nodeids


def test_a_hung_subprocess_fails_with_its_stacks_and_leaves_nothing_running(tmp_path):
    marker = f"time.sleep(120.{os.getpid()})"  # its child's command line, unique to this test
    script = f"import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', 'import time; {marker}'])\n" \
             "def waiting_for_godot():\n    time.sleep(120)\nwaiting_for_godot()\n"
    log = tmp_path / "hang.log"
    with pytest.raises(AssertionError, match="did not end in 3 s") as failure:
        processes.run_logged([sys.executable, "-c", script], log, timeout=3)
    assert "waiting_for_godot" in str(failure.value)  # py-spy's stack of the hung process
    assert "waiting_for_godot" in log.read_text()
    left = [pid for pid in processes.descendants(1) if marker in processes.command_line(pid)]
    assert not left, "the hung command's child was not killed"  # the whole process group was
    assert processes.run_logged([sys.executable, "-c", "print('fine')"], log, timeout=60) == 0
    assert log.read_text().endswith("fine\n")

"""CI's rule for skipped tests: a test that skips for a reason not on the allow-list fails the run.

A test that skips in CI checks nothing, so in CI (the variable CI set, as `.ci/run` has it) or
with `--strict-skips`, every skip's reason is matched against `.ci/allowed-skips.txt`; the run
ends with exit status 1 and a list of the unlisted skips when any is left. Each line of that
file is `REGEX  # why it cannot run here`; blank lines and lines starting with `#` are comments.
The reasons of all skips are printed anyway with `-rs`.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import List, Optional, Tuple

import pytest

ALLOW_LIST = Path(__file__).resolve().parents[2] / ".ci" / "allowed-skips.txt"


def load_allow_list(path: Optional[Path] = None) -> List[Tuple[re.Pattern, str]]:
    """(pattern, why) for each entry of the allow-list (default `ALLOW_LIST`).

    Raises pytest.UsageError for an entry with no `# why` or a pattern that is not a regex."""
    path = ALLOW_LIST if path is None else path
    entries = []
    if not path.is_file():
        return entries
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        pattern, _, why = line.partition("  # ")
        if not why.strip():
            raise pytest.UsageError(f"{path}:{number}: an allowed skip needs a reason: `REGEX  # why`")
        try:
            entries.append((re.compile(pattern.strip()), why.strip()))
        except re.error as error:
            raise pytest.UsageError(f"{path}:{number}: not a regular expression ({error})") from None
    return entries


def skip_reason(report: pytest.TestReport) -> str:
    """The reason a skipped test gave (pytest's 'Skipped: ' prefix removed)."""
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return text[len("Skipped: "):] if text.startswith("Skipped: ") else text


class SkipRule:
    """Collects the skips whose reason no allow-list entry matches; fails the session on any."""

    def __init__(self, allowed: List[Tuple[re.Pattern, str]]) -> None:
        self.allowed = allowed
        self.unlisted: List[Tuple[str, str]] = []

    def allows(self, reason: str) -> bool:
        return any(pattern.search(reason) for pattern, _ in self.allowed)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):
            reason = skip_reason(report)
            if not self.allows(reason):
                self.unlisted.append((report.nodeid, reason))

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.unlisted:
            terminalreporter.section("skips not on the allow-list (.ci/allowed-skips.txt)", red=True)
            for nodeid, reason in self.unlisted:
                terminalreporter.line(f"{nodeid}: {reason}")

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.unlisted and exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--strict-skips", action="store_true",
                     help="fail the run when a test skips for a reason not in .ci/allowed-skips.txt "
                          "(on by default when $CI is set)")


def strict(config: pytest.Config) -> bool:
    ci = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
    return bool(config.getoption("--strict-skips")) or ci


def pytest_configure(config: pytest.Config) -> None:
    if strict(config) and not hasattr(config, "workerinput"):  # the controller, or a run without xdist
        config.pluginmanager.register(SkipRule(load_allow_list()), "orchard-skip-rule")


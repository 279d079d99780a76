"""The processes of the local cluster: free ports on 127.0.0.1, starting a server in its own
session with its log file, records of what was started (pid + start time, so a reused pid is
never taken for ours), and stopping them with what they started in their process groups."""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from orchard.errors import OrchardError

log = logging.getLogger(__name__)

HOST = "127.0.0.1"

ProcessRecord = Dict[str, Any]  # {"name", "pid", "start_time", "log", "command"} as in state.json


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------- ports


def port_is_free(port: int) -> bool:
    """True when a server could listen on 127.0.0.1:port (servers set SO_REUSEADDR too)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port(taken: set) -> int:
    """A port free on 127.0.0.1 now and not in `taken`; OrchardError after 100 tries."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port = sock.getsockname()[1]
        if port not in taken:
            return port
    raise OrchardError("could not find a free port on 127.0.0.1")


def choose_ports(wanted: Dict[str, int], prefer: bool = True,
                 is_free: Callable[[int], bool] = port_is_free) -> Dict[str, int]:
    """A distinct free port for each name: the preferred one when free, else any free one."""
    chosen: Dict[str, int] = {}
    for name, preferred in wanted.items():
        taken = set(chosen.values())
        if prefer and preferred not in taken and is_free(preferred):
            chosen[name] = preferred
        else:
            chosen[name] = free_port(taken)
    return chosen


# ---------------------------------------------------------------- process ids


def process_start_time(pid: int) -> Optional[str]:
    """An id of the process `pid` that changes if the pid is reused (its start time), or None
    when no such process runs (zombies count as gone)."""
    stat = Path(f"/proc/{pid}/stat")
    if Path("/proc/self/stat").exists():
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        return None if fields[0] in ("Z", "X") else fields[19]
    try:
        result = subprocess.run(["ps", "-o", "stat=,lstart=", "-p", str(pid)],
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = result.stdout.strip()
    if result.returncode != 0 or not text or text.startswith("Z"):
        return None
    return text.split(None, 1)[1] if " " in text else text


def group_members(pgid: int) -> List[int]:
    """Pids in process group `pgid` (the children a recorded process started, e.g. executors)."""
    members: List[int] = []
    if Path("/proc/self/stat").exists():
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                members.append(int(entry.name))
        return members
    try:
        result = subprocess.run(["ps", "-A", "-o", "pid=,pgid="], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return members
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] == str(pgid):
            members.append(int(parts[0]))
    return members


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def log_tail(path: Path, lines: int = 5) -> str:
    """'; last lines: a | b | ...' of a log file, or '' when it is empty or unreadable."""
    try:
        tail = path.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return ""
    return "; last lines: " + " | ".join(line.strip() for line in tail) if tail else ""


# ---------------------------------------------------------------- started processes


class Processes:
    """The servers this object started (each in a new session, its own process group) and the
    records that identify them: `start` one, tell whether a record is `alive`, `stop` records."""

    def __init__(self) -> None:
        self._children: Dict[int, subprocess.Popen] = {}

    def start(self, name: str, command: List[str], log_file: Path, cwd: Path,
              env: Optional[Dict[str, str]] = None) -> ProcessRecord:
        """Start `command` with its output appended to `log_file`; its record."""
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(log_file, "ab") as out:
            out.write(f"\n===== orchard local up: {name} at {now()}\n".encode())
            out.flush()
            process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=str(cwd), env=env, start_new_session=True,
            )
        self._children[process.pid] = process
        start_time = None
        for _ in range(50):
            start_time = process_start_time(process.pid)
            if start_time or process.poll() is not None:
                break
            time.sleep(0.01)
        log.debug("started %s (pid %d): %s", name, process.pid, " ".join(command))
        return {"name": name, "pid": process.pid, "start_time": start_time, "log": str(log_file),
                "command": command[:2]}

    def alive(self, record: ProcessRecord) -> bool:
        """True when the recorded process still runs: the same pid with the same start time."""
        pid = int(record["pid"])
        child = self._children.get(pid)
        if child is not None and child.poll() is not None:
            return False
        start_time = record.get("start_time")
        return start_time is not None and process_start_time(pid) == start_time

    def stop(self, records: List[ProcessRecord], timeout: float) -> Dict[str, int]:
        """SIGTERM each recorded live process (and, after it, what it left in its process
        group), wait until all are gone; SIGKILL what is left at the timeout. {name: pid} of
        the processes that were alive."""
        live = [r for r in records if self.alive(r)]
        members = self._group_members(live)
        for record in reversed(live):
            log.info("stopping %s (pid %d)", record["name"], record["pid"])
            _signal(int(record["pid"]), signal.SIGTERM)

        def leftovers() -> List[int]:
            pids = [int(r["pid"]) for r in live if self.alive(r)]
            pids += [pid for pid, start in members.items() if start and process_start_time(pid) == start]
            return pids

        deadline = time.monotonic() + timeout
        terminated_members = False
        while leftovers() and time.monotonic() < deadline:
            if not terminated_members and not any(self.alive(r) for r in live):
                for pid in leftovers():
                    _signal(pid, signal.SIGTERM)
                terminated_members = True
            time.sleep(0.2)
        for pid in leftovers():
            log.warning("pid %d did not stop within %.0f s: killing it", pid, timeout)
            _signal(pid, signal.SIGKILL)
        while leftovers() and time.monotonic() < deadline + 10:
            time.sleep(0.1)
        self._reap(live)
        return {r["name"]: int(r["pid"]) for r in live}

    @staticmethod
    def _group_members(live: List[ProcessRecord]) -> Dict[int, Optional[str]]:
        """{pid: start time} of the other processes in the groups of the live records (children
        such as executors)."""
        members: Dict[int, Optional[str]] = {}
        for record in live:
            for pid in group_members(int(record["pid"])):
                if pid != int(record["pid"]):
                    members[pid] = process_start_time(pid)
        return members

    def _reap(self, records: List[ProcessRecord]) -> None:
        for record in records:
            child = self._children.pop(int(record["pid"]), None)
            if child is not None:
                with contextlib.suppress(Exception):
                    child.wait(timeout=5)

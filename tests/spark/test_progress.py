"""Live progress of the featurize stage: the worker reports, the listener, the two displays, and
`orchard run` seen through a pseudo-terminal and through a pipe."""
import io
import os
import pty
import re
import select
import subprocess
import sys
import time

import pytest

from orchard.commands.demo import DEMO_DATA
from orchard import progress
from orchard.progress import Display
from orchard.spark.progress import ProgressListener

DEMO_IMAGES = 160


def test_the_listener_adds_up_reports_with_its_token_only():
    listener = ProgressListener("127.0.0.1")
    host, port, token = listener.address.rsplit(":", 2)
    import socket

    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for message in (f"{token} 8 0", f"{token} 8 1", "someone-else 100 100", f"{token} x 1"):
        sender.sendto(message.encode(), (host, int(port)))
    listener.drain(0.5)
    assert listener.counts() == (16, 1)
    listener.close()


def test_a_stopped_drain_returns_when_woken():
    import threading

    listener, stop = ProgressListener("127.0.0.1"), threading.Event()
    waiting = threading.Thread(target=listener.drain, args=(30.0, stop))
    started = time.monotonic()
    waiting.start()
    stop.set()
    listener.wake()
    waiting.join(timeout=10)
    assert not waiting.is_alive() and time.monotonic() - started < 5  # not the 30 s asked for
    assert listener.counts() == (0, 0)  # the wake-up datagram is not a report
    listener.close()


def test_plain_lines_give_count_rate_eta_and_errors(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(progress, "LINE_INTERVAL_S", 0.0)
    display = Display(200, "featurize", stream=stream, terminal=False)
    display.update(50, 2)
    display.update(50, 2)  # unchanged: no new line
    display.update(200, 3, final=True)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert re.match(r"orchard: featurize 50/200 img \(25%\), [\d.]+ img/s(, ETA \d+ s)?, 2 errors", lines[0])
    assert lines[1].startswith("orchard: featurize 200/200 img (100%)") and "3 errors" in lines[1]


def test_a_terminal_gets_a_tqdm_bar():
    stream = io.StringIO()
    display = Display(100, "featurize", stream=stream, terminal=True)
    display.update(40, 1, "tasks 1/4")
    display.close()
    assert "40/100" in stream.getvalue() and "errors=1" in stream.getvalue() and "\r" in stream.getvalue()


def run_command(tmp_path, *extra, data=DEMO_DATA):
    return [sys.executable, "-m", "orchard", "run", "--input", str(data),
            "--output", str(tmp_path / "out"), "--master", "local[2]", *extra]


def read_pty(command, timeout=300):
    """Run `command` with stdout and stderr on a pseudo-terminal; its exit code and output."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower)
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1.0)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the terminal closed: the process ended
                break
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None:
            break
    code = process.wait(timeout=30)
    os.close(leader)
    return code, b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.slow
def test_run_on_a_terminal_shows_a_bar_that_moves_during_featurize(tmp_path, sample_dir):
    # the shared sample (1,920 images, ~10 s of featurizing on 2 cores): the demo set's 160
    # images can be done in a few seconds, between two of the bar's 1-second refreshes
    images = sum(1 for path in sample_dir.rglob("*.jpg"))
    code, output = read_pty(run_command(tmp_path, data=sample_dir))
    assert code == 0, output[-3000:]
    featurize = output[output.index("stage featurize ..."):output.index("stage featurize done")]
    counts = [int(n) for n in re.findall(rf"\b(\d+)/{images} \[", featurize)]  # tqdm: "72/1920 [00:04<..."
    assert counts[-1] == images
    assert len({n for n in counts if 0 < n < images}) >= 2, featurize  # moved while it ran
    assert "errors=0" in featurize and "img/s" in featurize


@pytest.mark.slow
def test_run_without_a_terminal_prints_plain_lines_and_quiet_prints_none(tmp_path):
    result = subprocess.run(run_command(tmp_path), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("orchard: featurize")]
    assert lines and lines[-1].startswith(f"orchard: featurize {DEMO_IMAGES}/{DEMO_IMAGES} img (100%)")
    assert "\r" not in result.stderr
    quiet = subprocess.run(run_command(tmp_path, "--overwrite", "--quiet"), capture_output=True, text=True,
                           timeout=300)
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert "orchard: featurize" not in quiet.stderr

"""Fixtures of the service tests: the model trained on
the sample (shared with tests/classify: tests/fixtures/sample.py), and `orchard serve` running as
a real process (the tiny model with a random head: tests/fixtures/models.py)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator, NamedTuple, Sequence

import pytest


@pytest.fixture(scope="session")
def trained_model(shared_trained_model) -> Path:
    """The model trained on the session's one run of the sample (tests/fixtures/sample.py)."""
    return shared_trained_model


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Served(NamedTuple):
    url: str
    process: subprocess.Popen
    log: Path


ORCHARD = (sys.executable, "-m", "orchard")


def start_service(model_dir, log: Path, *options: str, wait_s: float = 120.0,
                  launcher: Sequence[str] = ORCHARD) -> Served:
    """`<launcher> serve MODEL_DIR --port <free>` as a real process in a session of its own
    (`launcher`: this interpreter's orchard, or e.g. `buildah run ... -- orchard` in the image),
    once /healthz answers."""
    port = free_port()
    handle = open(log, "wb")
    process = subprocess.Popen([*launcher, "serve", str(model_dir), "--port", str(port), *options],
                               stdout=handle, stderr=subprocess.STDOUT, env=dict(os.environ), start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"orchard serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return Served(url, process, log)
        except OSError:
            time.sleep(0.3)
    stop_service(Served(url, process, log))
    raise RuntimeError(f"orchard serve did not answer /healthz within {wait_s:.0f} s:\n{log.read_text()}")


def stop_service(served: Served) -> int:
    """SIGTERM to the service (SIGKILL after 30 s); its exit code. Then whatever is left of its
    process group (e.g. what `buildah run` started in the image) is killed."""
    served.process.terminate()
    try:
        code = served.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        served.process.kill()
        code = served.process.wait()
    try:
        os.killpg(served.process.pid, signal.SIGKILL)
    except ProcessLookupError:  # the group is gone already
        pass
    return code


@pytest.fixture(scope="session")
def service(trained_model, tmp_path_factory) -> Iterator[Served]:
    """`orchard serve` of the model trained on the sample, running for the session."""
    served = start_service(trained_model, tmp_path_factory.mktemp("serve") / "serve.log")
    yield served
    stop_service(served)

"""Live progress of the featurize stage: images done / total, rate, ETA, errors so far.

Spark tells the driver about a task only when it ends (accumulators included), so the workers
also report each inference batch they finish: one small UDP datagram ("<token> <images> <errors>")
to a listener on the driver, whose address travels to the tasks as a job local property
(PROGRESS_PROPERTY). A poller thread on the driver reads those reports every second, and the
SparkContext status tracker (tasks done / total of the running stages), and draws them with
orchard.progress.Display on stderr (a tqdm bar on a terminal, else plain periodic lines; nothing
after `orchard.progress.configure(quiet=True)`, the commands' `--quiet`). A lost datagram only
makes the bar lag: the stage's result, not the bar, is what the run records.
"""
from __future__ import annotations

import logging
import secrets
import socket
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, Tuple

from orchard.progress import Display, is_quiet

log = logging.getLogger(__name__)

PROGRESS_PROPERTY = "orchard.progress"  # job local property: "<host>:<port>:<token>"
POLL_S = 1.0  # the poller's period (the bar is redrawn at least this often)
LAST_REPORTS_S = 0.05  # after the jobs: how long to wait for reports still in flight


# ---- worker side ---------------------------------------------------------------------------

def batch_reporter() -> Callable[[int, int], None]:
    """In a Spark task: a function `report(images, errors)` to call after each batch; a no-op
    when the job asked for no progress (or outside a task). Never raises."""
    try:
        from pyspark import TaskContext

        context = TaskContext.get()
        address = context.getLocalProperty(PROGRESS_PROPERTY) if context is not None else None
    except Exception:  # an older pyspark, or not in a task: no progress, never a failed task
        address = None
    if not address:
        return lambda images, errors: None
    host, port, token = address.rsplit(":", 2)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def report(images: int, errors: int) -> None:
        try:
            sender.sendto(f"{token} {int(images)} {int(errors)}".encode(), (host, int(port)))
        except OSError:
            pass

    return report


# ---- driver side ---------------------------------------------------------------------------

class ProgressListener:
    """A UDP socket on the driver that adds up the workers' batch reports (thread-safe)."""

    def __init__(self, host: str) -> None:
        self.token = secrets.token_hex(8)
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind((host, 0))
        self.socket.settimeout(0.2)
        self.images = 0
        self.errors = 0
        self._lock = threading.Lock()

    @property
    def address(self) -> str:
        host, port = self.socket.getsockname()[:2]
        return f"{host}:{port}:{self.token}"

    def drain(self, seconds: float, stop: Optional[threading.Event] = None) -> None:
        """Read reports for about `seconds`, or until `stop` is set (`wake` makes a waiting
        read return at once)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
            try:
                data = self.socket.recv(256)
            except socket.timeout:
                continue
            except OSError:
                return
            parts = data.decode("ascii", "replace").split()
            if len(parts) == 3 and parts[0] == self.token and parts[1].isdigit() and parts[2].isdigit():
                with self._lock:
                    self.images += int(parts[1])
                    self.errors += int(parts[2])

    def wake(self) -> None:
        """Send this listener an empty datagram, so that a read waiting in `drain` returns."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(b"", self.socket.getsockname()[:2])

    def counts(self) -> Tuple[int, int]:
        with self._lock:
            return self.images, self.errors

    def close(self) -> None:
        self.socket.close()


def stage_tasks(spark_context) -> Tuple[int, int]:
    """(tasks done, tasks in all) of the stages running now, from the status tracker."""
    tracker = spark_context.statusTracker()
    done = total = 0
    for stage_id in tracker.getActiveStageIds():
        info = tracker.getStageInfo(stage_id)
        if info is not None:
            done += info.numCompletedTasks
            total += info.numTasks
    return done, total


@contextmanager
def featurize_progress(spark_context, total: int, what: str = "featurize") -> Iterator[None]:
    """Show the progress of the Spark jobs run inside this block (on this thread) over `total`
    images; nothing when quiet. The workers report through `batch_reporter`."""
    if is_quiet():
        yield
        return
    host = spark_context.getConf().get("spark.driver.host", "127.0.0.1")
    try:
        listener = ProgressListener(host)
    except OSError as error:
        log.debug("no live progress (cannot listen on %s: %s)", host, error)
        yield
        return
    display = Display(total, what)
    stop = threading.Event()

    def poll() -> None:
        while True:
            listener.drain(POLL_S, stop)
            if stop.is_set():
                return
            _show(display, listener, spark_context)

    poller = threading.Thread(target=poll, name="orchard-progress", daemon=True)
    spark_context.setLocalProperty(PROGRESS_PROPERTY, listener.address)
    poller.start()
    try:
        yield
    finally:
        spark_context.setLocalProperty(PROGRESS_PROPERTY, None)
        stop.set()
        listener.wake()
        poller.join(timeout=5)
        listener.drain(LAST_REPORTS_S)  # the last datagrams
        _show(display, listener, spark_context, final=True)
        display.close()
        listener.close()


def _show(display: Display, listener: ProgressListener, spark_context, final: bool = False) -> None:
    images, errors = listener.counts()
    try:
        done, tasks = stage_tasks(spark_context)
        extra = f"tasks {done}/{tasks}" if tasks else ""
    except Exception:  # the context is stopping
        extra = ""
    display.update(images, errors, extra, final=final)

"""Progress output of long work (featurize, copies, scale tests): images, files or bytes done /
total, rate, ETA, errors so far.

- on a terminal (the stream is a tty): a tqdm bar;
- otherwise (a log file, a pipe, CI): a plain line every `LINE_INTERVAL_S` seconds while the count
  moves, and a last one;
- `configure(quiet=True)` (the commands' `--quiet`) turns both off for the process.
"""
from __future__ import annotations

import io
import os
import sys
import time
from typing import Optional, TextIO

LINE_INTERVAL_S = 5.0  # seconds between plain progress lines (output is not a terminal)
REDRAW_S = 0.5  # at most this often the bar is redrawn

_settings = {"quiet": False}


def configure(quiet: bool = False) -> None:
    """Turn progress output off (`quiet`) or on, for this process."""
    _settings["quiet"] = bool(quiet)


def is_quiet() -> bool:
    """True when progress output is off for this process."""
    return _settings["quiet"]


class Display:
    """Draws counts: a tqdm bar on a terminal, else plain periodic lines on `stream`."""

    def __init__(self, total: int, what: str, stream: Optional[TextIO] = None,
                 unit: str = "img", terminal: Optional[bool] = None) -> None:
        self.stream = stream or sys.stderr
        self.terminal = self.stream.isatty() if terminal is None else terminal
        self.total, self.what, self.unit = total, what, unit
        self.started = time.monotonic()
        self.last_line = 0.0  # when the last line (or bar) was drawn
        self.last_count = -1
        self.bar = None
        if self.terminal:
            from tqdm import tqdm

            # a terminal that reports no size (0x0, e.g. a bare pseudo-terminal): 100x20
            width = {"dynamic_ncols": True} if _columns(self.stream) > 0 else {"ncols": 100, "nrows": 20}
            self.bar = tqdm(total=total, desc=what, unit=unit, unit_scale=unit == "B", file=self.stream,
                            mininterval=REDRAW_S, smoothing=0.1, **width)

    def update(self, done: int, errors: Optional[int] = None, extra: str = "", final: bool = False) -> None:
        """Show `done` of the total (and `errors` so far, when counted); redrawn at most every
        REDRAW_S seconds (a bar) or LINE_INTERVAL_S seconds (lines), and always when `final`."""
        done = min(done, self.total) if self.total else done
        now = time.monotonic()
        if self.bar is not None:
            self.bar.n = done
            if final or now - self.last_line >= REDRAW_S:
                self.last_line = now
                postfix = ([f"errors={errors}"] if errors is not None else []) + ([extra] if extra else [])
                self.bar.set_postfix_str(", ".join(postfix), refresh=False)
                self.bar.refresh()
            return
        if final or (done != self.last_count and now - self.last_line >= LINE_INTERVAL_S):
            self.last_line, self.last_count = now, done
            print(self.line(done, errors, extra, now - self.started), file=self.stream, flush=True)

    def line(self, done: int, errors: Optional[int], extra: str, elapsed: float) -> str:
        """`orchard: <what> <done>/<total> <unit> (<share>), <rate>, ETA, <errors>, <extra>, <elapsed>`."""
        rate = done / elapsed if elapsed > 0 else 0.0
        share = f" ({100.0 * done / self.total:.0f}%)" if self.total else ""
        eta = f", ETA {(self.total - done) / rate:.0f} s" if rate > 0 and self.total and done < self.total else ""
        parts = [f"{_fraction(done, self.total, self.unit)}{share}",
                 f"{_amount(rate, self.unit)}/s{eta}"]
        parts += [f"{errors} errors"] if errors is not None else []
        parts += [extra] if extra else []
        return f"orchard: {self.what} " + ", ".join(parts) + f", {elapsed:.0f} s"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _columns(stream: TextIO) -> int:
    """The width of the terminal `stream` writes to; 0 when unknown."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return 0


def _fraction(done: int, total: int, unit: str) -> str:
    """`12/160 img`, or bytes as `1.2/3.4 MB`."""
    if unit == "B":
        return f"{done / 1e6:.1f}/{total / 1e6:.1f} MB"
    return f"{done}/{total} {unit}"


def _amount(value: float, unit: str) -> str:
    """`12 img`, `3.4 img` (a rate), or bytes as `1.2 MB`."""
    if unit == "B":
        return f"{value / 1e6:.1f} MB"
    return f"{value:.0f} {unit}" if float(value).is_integer() else f"{value:.1f} {unit}"

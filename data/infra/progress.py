"""One progress report style for long work: a tqdm bar on a terminal, log lines (rate, ETA) otherwise.

On an interactive stderr, with the logger at INFO (``bcls -q`` raises it to WARNING), a :class:`Progress` draws a
tqdm bar; otherwise it logs ``what: done/total unit (rate/s, ETA …)`` at most every ``interval`` seconds and once
at the end, so logs of a background run show progress at least every 10 s and never fill with bars.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_DATEFMT = "%H:%M:%S"
QUIET_LOGGERS = ("sentence_transformers", "transformers", "faiss", "urllib3", "httpx", "filelock")
"""Libraries whose INFO lines would drown bcls's own; they log warnings only."""


def setup_logging(level: int, fmt: str | None = None, datefmt: str | None = None) -> None:
    """Log to stderr at ``level`` in bcls's format (or ``fmt`` / ``datefmt``), the :data:`QUIET_LOGGERS` at
    WARNING: the CLI's set-up, which its child processes repeat."""
    logging.basicConfig(level=level, format=fmt or LOG_FORMAT, datefmt=datefmt or LOG_DATEFMT,
                        handlers=[_StderrHandler()], force=True)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


class _StderrHandler(logging.StreamHandler):
    """A handler that writes to ``sys.stderr`` as it is when each record comes, not as it was at set-up: the CLI
    run in-process (a test's ``CliRunner``, a notebook) swaps stderr for a buffer that is closed afterwards."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


class Progress:
    """Progress of ``total`` units of work named ``what`` (``update(n)`` as they finish, ``close()`` at the end).

    Args:
        total: units of work (captions, steps, shards …).
        what: what the work is, for the bar and the log lines.
        unit: the unit's name.
        logger: where log lines go (and whose level decides whether anything is shown).
        interval: seconds between log lines.
        bar: force (True) or forbid (False) the tqdm bar; None = when stderr is a terminal.
        enabled: False reports nothing (e.g. on the processes of a distributed run other than rank 0).
    """

    def __init__(self, total: int, what: str, unit: str = "it", logger: logging.Logger | None = None,
                 interval: float = 10.0, bar: bool | None = None, enabled: bool = True):
        self.total, self.what, self.unit = int(total), what, unit
        self.log = logger or logging.getLogger("bcls")
        self.interval = interval
        self.done = 0
        self.start = self._last = time.perf_counter()
        self.enabled = enabled and self.log.isEnabledFor(logging.INFO)
        use_bar = (sys.stderr.isatty() if bar is None else bar) and self.enabled
        self._bar: Any = None
        if use_bar:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc=what, unit=unit, file=sys.stderr, dynamic_ncols=True)

    @property
    def bar_shown(self) -> bool:
        """Whether a tqdm bar reports (else log lines do)."""
        return self._bar is not None

    @property
    def rate(self) -> float:
        return self.done / max(time.perf_counter() - self.start, 1e-9)

    def eta(self) -> float:
        return (self.total - self.done) / max(self.rate, 1e-9)

    def update(self, n: int = 1, note: str = "") -> None:
        """``n`` more units done; ``note`` (e.g. the current loss) goes into the bar or the next log line."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            if note:
                self._bar.set_postfix_str(note, refresh=False)
            return
        now = time.perf_counter()
        if self.enabled and now - self._last >= self.interval and self.done < self.total:
            self._last = now
            self._line(note)

    def _line(self, note: str) -> None:
        self.log.info("%s: %d/%d %s (%.1f %s/s, ETA %.0fs)%s", self.what, self.done, self.total, self.unit,
                      self.rate, self.unit, self.eta(), f"; {note}" if note else "")

    def close(self, note: str = "") -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.enabled:
            self._line(note)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

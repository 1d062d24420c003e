"""Progress reports: log lines with rate and ETA at most every interval, a bar only on request or a terminal."""

import logging

from bcls.data.infra.progress import Progress


def test_log_lines_are_spaced_and_quiet_mode_hides_them(caplog, monkeypatch):
    clock = iter(range(0, 10_000, 3))  # every call to the clock advances 3 s
    monkeypatch.setattr("bcls.data.infra.progress.time.perf_counter", lambda: next(clock))
    log = logging.getLogger("bcls.test.progress")
    with caplog.at_level(logging.INFO, logger="bcls.test.progress"):
        with Progress(10, "training", "steps", log, interval=10.0, bar=False) as p:
            for _ in range(10):
                p.update(1, "loss 0.5")
    lines = [r.getMessage() for r in caplog.records]
    assert 2 <= len(lines) <= 4 and all(line.startswith("training: ") for line in lines)
    assert "steps/s, ETA" in lines[0] and "loss 0.5" in lines[0] and lines[-1].startswith("training: 10/10 steps")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="bcls.test.progress"):
        with Progress(5, "quiet", logger=log, bar=True) as p:  # -q: no bar, no lines
            p.update(5)
        assert not p.bar_shown
    assert not caplog.records

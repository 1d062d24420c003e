"""A Ctrl-C that Python drops (raised inside a weakref callback) is raised again at the loop's next step."""

import signal
import sys
import threading

import pytest

from bcls.data.infra.interrupts import interrupt_point, interrupts_deferred, remembered_interrupts
from tests.conftest import drop_a_ctrl_c


@pytest.fixture
def unraisable(monkeypatch):
    """What Python would print as "Exception ignored in: …"."""
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda info: seen.append(type(info.exc_value)))
    return seen


def test_python_drops_a_ctrl_c_raised_in_a_weakref_callback(unraisable):
    # the behaviour the module works around: without it nothing is raised, and a training loop would run on
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    drop_a_ctrl_c()
    assert unraisable == [KeyboardInterrupt]
    interrupt_point()  # nothing remembered outside the block


def _loop_with_ctrl_c_at_step_1(ctrl_c):
    """The steps a five-step loop inside the block ran when ``ctrl_c()`` came during step 1."""
    steps = []
    with pytest.raises(KeyboardInterrupt), remembered_interrupts():
        for step in range(5):
            interrupt_point()
            steps.append(step)
            if step == 1:
                ctrl_c()
                steps.append("after")
    return steps


def test_the_dropped_ctrl_c_is_raised_at_the_next_interrupt_point(unraisable):
    assert _loop_with_ctrl_c_at_step_1(drop_a_ctrl_c) == [0, 1, "after"]
    assert unraisable == []  # no "Exception ignored" traceback for an interrupt that was not lost
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Python's handler is back
    drop_a_ctrl_c()
    assert unraisable == [KeyboardInterrupt]  # and so is the hook


def test_a_ctrl_c_that_gets_through_stops_at_once_and_is_forgotten_after_the_block():
    assert _loop_with_ctrl_c_at_step_1(lambda: signal.raise_signal(signal.SIGINT)) == [0, 1]
    with remembered_interrupts():
        interrupt_point()  # a new block starts with nothing pending


def test_a_handler_of_the_users_and_other_threads_are_left_alone():
    seen = []
    previous = signal.signal(signal.SIGINT, lambda *_: seen.append("user"))
    try:
        with remembered_interrupts():
            signal.raise_signal(signal.SIGINT)
            interrupt_point()
        assert seen == ["user"]
    finally:
        signal.signal(signal.SIGINT, previous)
    errors = []

    def in_a_thread():
        try:
            with remembered_interrupts():
                interrupt_point()
        except Exception as err:  # signal.signal would raise ValueError outside the main thread
            errors.append(err)

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join()
    assert errors == []


def test_only_the_main_thread_raises_a_dropped_ctrl_c(unraisable):
    raised = []

    def worker():  # a worker thread's loop (an embedding shared with a thread pool, say) runs on
        try:
            interrupt_point()
        except KeyboardInterrupt:
            raised.append("worker")

    with pytest.raises(KeyboardInterrupt), remembered_interrupts():
        drop_a_ctrl_c()
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
        interrupt_point()
    assert raised == []


def test_a_deferred_ctrl_c_lets_the_block_finish_then_stops():
    done = []
    with pytest.raises(KeyboardInterrupt), remembered_interrupts():
        with interrupts_deferred():
            signal.raise_signal(signal.SIGINT)
            done.append("rename")
            done.append("record")  # the two statements that must finish together
        done.append("after")
    assert done == ["rename", "record"]
    with remembered_interrupts(), interrupts_deferred():
        pass  # nothing pending: no interrupt
    with pytest.raises(ValueError), remembered_interrupts(), interrupts_deferred():
        signal.raise_signal(signal.SIGINT)
        raise ValueError("the block's own error goes on")

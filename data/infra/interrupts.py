"""Ctrl-C that is not lost: SIGINT raises ``KeyboardInterrupt`` as usual and is also remembered, so that a long
loop can raise it again at its next step.

Python turns SIGINT into ``KeyboardInterrupt`` at the next bytecode the main thread runs. When that bytecode belongs
to a weakref callback or a ``__del__`` (importlib's module-lock clean-up, run during any import, is one), Python
prints the exception as "Exception ignored in: …" and drops it, and the program runs on as if no Ctrl-C came. Inside
:func:`remembered_interrupts`, :func:`interrupt_point` raises such a lost interrupt again, and the traceback Python
would print for it is left out (the interrupt is not lost, so there is nothing to report).

:func:`interrupts_deferred` holds a Ctrl-C back until the next :func:`interrupt_point` or the end of the block.
Training runs its epochs that way, so a Ctrl-C never lands inside torch, a TensorBoard write (an exception there can
leave the writer's queue half-updated, and closing it then hangs) or a checkpoint written but not yet recorded.

Every CLI command runs inside the block, and so do :func:`~bcls.trainer.train.train` and
:func:`~bcls.pipeline.building.label_build.build_labels` when called from Python. The long loops call
:func:`interrupt_point`: each training step and dev-evaluation batch, each finished label shard, each chunk of
captions embedded, each batch of images encoded.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Any, Iterator

__all__ = ["interrupt_point", "interrupts_deferred", "remembered_interrupts"]

_pending = False
_deferring = 0


def _handler(signum: int, frame: Any) -> None:
    global _pending
    _pending = True
    if not _deferring:
        raise KeyboardInterrupt


@contextlib.contextmanager
def remembered_interrupts() -> Iterator[None]:
    """Remember every SIGINT while the block runs (:func:`interrupt_point` raises one that was lost).

    Meant for a block that ends on Ctrl-C: a ``KeyboardInterrupt`` caught inside it is raised again at the next
    :func:`interrupt_point`, since the handler cannot tell one that got through from one that was dropped.

    Only where Python's own handler is in place and only in the main thread: a SIGINT the process ignores (a
    background job) or handles itself keeps that disposition, and other threads cannot set handlers.
    """
    global _pending
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    previous_hook = sys.unraisablehook

    def unraisable(info: Any) -> None:
        if not (_pending and isinstance(info.exc_value, KeyboardInterrupt)):
            previous_hook(info)

    _pending = False
    signal.signal(signal.SIGINT, _handler)
    sys.unraisablehook = unraisable
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.unraisablehook = previous_hook
        _pending = False


def interrupt_point() -> None:
    """Raise ``KeyboardInterrupt`` if a SIGINT came since :func:`remembered_interrupts` began (whether or not its
    first ``KeyboardInterrupt`` got through); call it once per step of a long loop. Only the main thread raises it
    (where signals arrive); elsewhere it does nothing, so a loop shared with worker threads may call it."""
    global _pending
    if _pending and threading.current_thread() is threading.main_thread():
        _pending = False
        raise KeyboardInterrupt


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold a Ctrl-C back until the block's next :func:`interrupt_point` or its end, then raise it (if the block
    itself raised, that error goes on).

    Only inside :func:`remembered_interrupts`, whose handler it relies on; elsewhere Ctrl-C stops the block as
    usual.
    """
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
    interrupt_point()

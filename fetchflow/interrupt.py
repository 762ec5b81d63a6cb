"""Stopping a run without spending more: the process-wide "stop requested" flag.

``fetchflow run`` installs :func:`stop_on_interrupt` for SIGINT (Ctrl-C) and SIGTERM. The
first signal only *requests* a stop: the engine starts no further step, a running step
starts no further billable call (steps ask :func:`check_interrupt` before each one, also
through :meth:`fetchflow.StepContext.check_interrupt`), calls already in flight finish and
what they made is kept. The run then ends ``interrupted``, is saved for ``--resume``, and
the command exits 130 (SIGINT) or 143 (SIGTERM). A second signal stops waiting: it raises
:class:`KeyboardInterrupt` in the main thread; the flag stays set, so no call starts after it
either.

Pure of Prefect; the flag is a :class:`threading.Event`, safe to read from step threads.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

from fetchflow.errors import Interrupted

__all__ = [
    "STOP_SIGNALS",
    "Interrupted",
    "check_interrupt",
    "clear_stop",
    "exit_code_for",
    "handle_stop_signals",
    "request_stop",
    "stop_on_interrupt",
    "stop_requested",
    "stop_signal",
]

#: The signals that request a stop.
STOP_SIGNALS = ("SIGINT", "SIGTERM")

_stop = threading.Event()
_signal_number: list[int] = []
_lock = threading.Lock()

_FIRST_NOTICE = (
    "\nfetchflow: stopping: no new step or provider call will start; calls in flight finish "
    "and what they make is kept (press Ctrl-C again to stop waiting)\n"
)


def request_stop(signum: int = signal.SIGINT) -> None:
    """Ask the current run to stop (what the first Ctrl-C or SIGTERM does)."""
    with _lock:
        if not _signal_number:
            _signal_number.append(signum)
    _stop.set()


def stop_requested() -> bool:
    """Whether a stop was requested: start nothing billable once it is."""
    return _stop.is_set()


def stop_signal() -> int | None:
    """The signal that requested the stop (``signal.SIGINT``, ``signal.SIGTERM``), if any."""
    with _lock:
        return _signal_number[0] if _signal_number else None


def clear_stop() -> None:
    """Forget a stop request (a new run in the same process, tests)."""
    with _lock:
        _signal_number.clear()
    _stop.clear()


def check_interrupt(what: str = "") -> None:
    """Raise :class:`Interrupted` when a stop was requested; call it before a billable call.

    Args:
        what: What would have started (``image 2 of 3``), for the message.

    Raises:
        Interrupted: A stop was requested (not retryable).
    """
    if _stop.is_set():
        raise Interrupted(
            message="interrupted: " + (f"{what} not started" if what else "nothing new started"),
            hint="resume the run with fetchflow run FILE --resume RUN_ID",
            retryable=False,
        )


def exit_code_for(signum: int | None) -> int:
    """The shell's convention: 128 + the signal's number (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + (signum if signum is not None else signal.SIGINT)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _stop.is_set():
        raise KeyboardInterrupt  # the second signal: stop waiting
    request_stop(signum)
    # os.write, not print: the interrupted code may hold the console's lock.
    with contextlib.suppress(OSError):
        os.write(2, _FIRST_NOTICE.encode())


def stop_on_interrupt() -> Callable[[], None]:
    """Make SIGINT and SIGTERM request a stop (see the module docstring).

    Only the main thread can install handlers; elsewhere nothing changes. Signals someone
    chose to ignore stay ignored. Returns a function that puts the previous handlers back.
    """
    previous: dict[int, object] = {}
    if threading.current_thread() is threading.main_thread():
        for name in STOP_SIGNALS:
            number = getattr(signal, name)
            if signal.getsignal(number) is not signal.SIG_IGN:
                previous[number] = signal.signal(number, _on_signal)

    def restore() -> None:
        for number, handler in previous.items():
            signal.signal(number, handler)  # type: ignore[arg-type]

    return restore


@contextlib.contextmanager
def handle_stop_signals() -> Iterator[None]:
    """:func:`stop_on_interrupt` for the ``with`` block, previous handlers restored after.

    The runner re-enters it inside the flow body: Prefect replaces the SIGTERM handler for
    the duration of a flow run (it would crash the run instead of stopping it).
    """
    restore = stop_on_interrupt()
    try:
        yield
    finally:
        restore()

"""Ctrl-C as a request, not an exception: the batch job stops where it is safe to.

A ``KeyboardInterrupt`` raised at an arbitrary bytecode lands anywhere: inside a DuckDB
transaction, inside a ctypes callback that swallows it (llama.cpp's log hook, so the model
load ignored Ctrl-C), or between a chunk's records and its extraction row. ``interruptible``
installs a SIGINT handler that only sets a flag; the job checks it between chunks, the local
model checks it on every generated token, the main thread waits for remote requests in short
slices; loading the model and reading a prompt (long C calls with nothing to keep) are
aborted outright. The run is then marked ``interrupted``, its finished chunks stay stored,
and ``Interrupted`` (exit code 130) reaches the CLI as one line. A second Ctrl-C raises at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from types import CodeType, FrameType
from typing import Any, TypeVar

from pipeline.core.errors import PipelineError


class Interrupted(PipelineError):
    """The user pressed Ctrl-C; what was finished is stored."""

    exit_code = 130


class CtrlC(BaseException):
    """Ctrl-C outside the batch job's safe points (imports, reading the inputs): nothing was
    written yet. A ``BaseException``, so no library's ``except Exception`` swallows it, and not
    a ``KeyboardInterrupt``, which typer turns into a silent exit."""


def raise_on_interrupt() -> None:
    """The CLI's SIGINT handler until a job installs its own: raise ``CtrlC``."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise CtrlC

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handler)


class Aborted(CtrlC):
    """Ctrl-C inside an ``abortable`` stretch: long C calls (loading the model, reading a
    prompt) stop between their pieces instead of running to the end first."""


class StopFlag:
    """Set by the SIGINT handler; read by whatever can stop early. Inside ``abortable()`` the
    handler raises ``Aborted`` at once: for stretches that hold no state worth keeping."""

    def __init__(self) -> None:
        self.requested = False
        self._abortable = 0

    def __call__(self) -> bool:
        return self.requested

    @contextmanager
    def abortable(self) -> Iterator[None]:
        if self.requested:
            raise Aborted
        self._abortable += 1
        try:
            yield
        finally:
            self._abortable -= 1
        if self.requested:  # pressed while a C callback ran, where the handler may not raise
            raise Aborted

    def check(self, run_id: str | None = None) -> None:
        if self.requested:
            raise interrupted(run_id)


_C_CALLBACKS: set[CodeType] = set()
#: libraries whose Python code runs inside ctypes callbacks (llama-cpp-python's samplers and
#: logits processors); Ctrl-C there sets the flag, and the stretch ends at the next check
_C_CALLBACK_MODULES = ("llama_cpp",)
F = TypeVar("F", bound=Callable[..., Any])


def c_callback(fn: F) -> F:
    """Mark ``fn`` as called from C (a ctypes callback): Ctrl-C while it runs only sets the
    flag, since an exception raised there is printed by ctypes and then dropped."""
    _C_CALLBACKS.add(fn.__code__)
    return fn


def _in_c_callback(frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_code in _C_CALLBACKS or str(frame.f_globals.get("__name__", "")).startswith(_C_CALLBACK_MODULES):
            return True
        frame = frame.f_back
    return False


def abortable(stop: Callable[[], bool]) -> AbstractContextManager[None]:
    """``stop.abortable()`` in the main thread, where the SIGINT handler runs; nothing in
    another thread (the handler would raise in the main thread, wherever it is)."""
    enter = getattr(stop, "abortable", None)
    if enter is None or threading.current_thread() is not threading.main_thread():
        return nullcontext()
    cm: AbstractContextManager[None] = enter()
    return cm


def interrupted(run_id: str | None) -> Interrupted:
    where = f"run {run_id} is marked interrupted; " if run_id else ""
    return Interrupted("interrupted", f"{where}run the same command again to do only what is missing")


@contextmanager
def interruptible() -> Iterator[StopFlag]:
    """A ``StopFlag`` that the first Ctrl-C sets (in the main thread; elsewhere a flag that
    stays unset)."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if flag.requested:  # a second Ctrl-C: the user insists
            raise KeyboardInterrupt
        flag.requested = True
        if flag._abortable and not _in_c_callback(frame):
            raise Aborted

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)

"""The papermill processes of a sweep's points in flight, and stopping them together with
their kernels (a kernel runs in a session of its own) when the sweep is interrupted or killed."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading

import psutil


def kill_point(proc: subprocess.Popen) -> None:
    """Kill papermill's process group and every descendant: its kernel runs in a session of
    its own, and would notice its parent gone only at its next poll, training meanwhile."""
    try:
        kids = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        kids = []
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for kid in kids:
        with contextlib.suppress(psutil.Error):
            kid.kill()


@contextlib.contextmanager
def terminate_as_interrupt():
    """SIGTERM (a `kill`, a job scheduler, a closed terminal's SIGHUP) raises KeyboardInterrupt
    as Ctrl-C does, so the sweep stops its points before it exits. Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class Running:
    """The papermill processes in flight, so that an interrupted sweep can stop them all (they
    run in their own sessions and do not receive the terminal's Ctrl-C)."""

    def __init__(self):
        self._procs: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self.stopping = False

    def add(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs.add(proc)
            if self.stopping:
                kill_point(proc)

    def discard(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs.discard(proc)

    def kill_all(self) -> None:
        with self._lock:
            self.stopping = True
            for proc in self._procs:
                kill_point(proc)

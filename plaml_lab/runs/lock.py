"""One trainer per run folder: an exclusive lock held while a process pretrains into it.

Two processes training one folder both write checkpoints/last.pt and append to one
metrics.jsonl, and neither notices: a relaunched ablation whose old pool workers survived did
exactly that. The lock is an advisory `flock` on a hidden sibling file (`.NAME.lock` beside
the folder, so it exists before the folder does and survives a run being moved aside); the
kernel drops it when the holder exits, however it exits, so a killed run never leaves a stale
lock. Without fcntl (Windows) there is no lock.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from plaml_lab.errors import RunError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None


def lock_path(out: str | Path) -> Path:
    """The lock file of run folder `out`: `.NAME.lock` in its parent folder."""
    out = Path(out).resolve()  # "." and "runs/x/" have a name too
    return out.with_name(f".{out.name}.lock")


def holder(out: str | Path) -> str:
    """The pid recorded by the process that holds (or last held) the lock, '' if none."""
    try:
        return lock_path(out).read_text().strip()
    except OSError:
        return ""


@contextmanager
def run_lock(out: str | Path):
    """Hold the run folder's lock for the block; RunError at once if another process holds it."""
    if fcntl is None:
        yield
        return
    path = lock_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid = holder(out)
            raise RunError(f"--out {out}: another process{f' (pid {pid})' if pid else ''} is "
                           "training this run; stop it or choose another --out") from None
        # The holder unlinks the file on release: a lock taken on an unlinked file guards
        # nothing, so take it again on the file now at the path.
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        path.unlink(missing_ok=True)  # before the unlock: nobody can lock the file we remove
        os.close(fd)

"""Measuring a step: device synchronisation, the matmul peak that MFU is relative to, and peak
memory (CUDA allocator stats; on CPU the process RSS high-water mark, made exact)."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import math
import re
import time
from pathlib import Path

import torch

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def matmul_rate(device: torch.device, precision: str, n: int, reps: int = 3,
                _cache: dict = {}) -> tuple[float, float]:  # noqa: B006 (operands are reused)
    """GFLOP/s of `reps` back-to-back (n, n) @ (n, n) products in the precision's dtype, per
    second of wall-clock time and per second of process CPU time."""
    key = (str(device), precision, n)
    if key not in _cache:
        g = torch.Generator(device=device).manual_seed(0)
        a = torch.randn(n, n, device=device, generator=g).to(_DTYPES[precision])
        b = torch.randn(n, n, device=device, generator=g).to(_DTYPES[precision])
        _cache[key] = (a, b, torch.empty_like(a))
        torch.mm(a, b, out=_cache[key][2])  # first call: kernel selection, page faults
    a, b, c = _cache[key]
    synchronize(device)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(reps):
        torch.mm(a, b, out=c)
    synchronize(device)
    flop = 2 * n ** 3 * reps / 1e9
    cpu = time.process_time() - c0
    return flop / (time.perf_counter() - t0), (flop / cpu if cpu > 0 else math.nan)


def default_matmul_n(device: torch.device) -> int:
    # large enough to reach the machine's matmul peak, small enough to time in a few ms
    return 8192 if device.type == "cuda" else 1024


def _proc_status_kb(field_name: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    m = re.search(rf"^{field_name}:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) if m else None


@contextlib.contextmanager
def exact_rss(device: torch.device):
    """On CPU with glibc: serve every allocation of 256 KiB or more by mmap, returned to the OS
    on free, so that the process's RSS follows the live tensors and its peak (VmHWM) is the peak
    of live memory. Afterwards the thresholds are left at glibc's steady-state values (32 MiB
    mmap, 64 MiB trim), which is what the dynamic defaults grow to in a training process."""
    libc = None
    if device.type == "cpu":
        try:
            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt(-3, 256 * 1024)  # M_MMAP_THRESHOLD
            libc.mallopt(-1, 256 * 1024)  # M_TRIM_THRESHOLD
        except (OSError, AttributeError):
            libc = None
    try:
        yield
    finally:
        if libc is not None:
            libc.mallopt(-3, 32 * 2**20)
            libc.mallopt(-1, 64 * 2**20)


def release_cpu_memory() -> None:
    """Hand freed heap pages back to the OS, so the next RSS baseline is not inflated by pages
    an earlier case freed (glibc keeps them otherwise)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak memory growth (MB) of the code run inside the context: CUDA max allocated, or the
    CPU process's peak RSS (VmHWM after a reset). `.mb` is None where it cannot be measured."""

    def __init__(self, device: torch.device):
        self.device = device
        self.mb: float | None = None

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            gc.collect()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            release_cpu_memory()
            try:
                Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
                self._base = _proc_status_kb("VmRSS")
            except OSError:
                self._base = None
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            synchronize(self.device)
            self.mb = (torch.cuda.max_memory_allocated(self.device) - self._base) / 2**20
        elif self._base is not None:
            peak = _proc_status_kb("VmHWM")
            self.mb = None if peak is None else (peak - self._base) / 1024

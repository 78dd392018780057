"""A latency hint to the kernel's scheduler: short time slices for the API process.

Since Linux 6.12 the fair scheduler (EEVDF) lets a normal task ask for a
shorter time slice through ``sched_setattr``'s ``sched_runtime`` (0.1 to
100 ms). A shorter slice gives the task an earlier virtual deadline, so when
it wakes up (a request arrived) it preempts a neighbour busy with batch work
sooner instead of waiting for that neighbour's slice to end. Its share of the
CPU does not change: weight and nice value stay as they were; the task is
only scheduled in smaller pieces. On a machine where the API shares cores with
workers, the broker and Redis this is what keeps a lookup's tail short (see
README, Lookup latency). Older kernels accept the call and ignore the slice;
other systems do not have it, and :func:`request_slice` says so.

The setting applies to the calling thread and to the threads it starts later.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform

log = logging.getLogger(__name__)

_SYSCALLS = {"x86_64": (314, 315), "aarch64": (274, 275)}  # sched_setattr, sched_getattr
_SCHED_OTHER = 0
MIN_MS, MAX_MS = 0.1, 100.0


class _SchedAttr(ctypes.Structure):
    _fields_ = [
        ("size", ctypes.c_uint32), ("sched_policy", ctypes.c_uint32),
        ("sched_flags", ctypes.c_uint64), ("sched_nice", ctypes.c_int32),
        ("sched_priority", ctypes.c_uint32), ("sched_runtime", ctypes.c_uint64),
        ("sched_deadline", ctypes.c_uint64), ("sched_period", ctypes.c_uint64),
        ("sched_util_min", ctypes.c_uint32), ("sched_util_max", ctypes.c_uint32),
    ]


def _syscalls() -> tuple[int, int] | None:
    if platform.system() != "Linux":
        return None
    return _SYSCALLS.get(platform.machine())


def request_slice(ms: float) -> bool:
    """Ask for time slices of ``ms`` milliseconds for this thread; False where unsupported.

    The nice value is kept; a policy other than the normal one (e.g. real-time,
    set by an operator) is left alone.
    """
    if not MIN_MS <= ms <= MAX_MS:
        raise ValueError(f"a slice is {MIN_MS:g}-{MAX_MS:g} ms, got {ms:g}")
    calls = _syscalls()
    if calls is None or os.sched_getscheduler(0) != _SCHED_OTHER:
        return False
    attr = _SchedAttr(size=ctypes.sizeof(_SchedAttr), sched_policy=_SCHED_OTHER,
                      sched_nice=os.getpriority(os.PRIO_PROCESS, 0),
                      sched_runtime=int(ms * 1_000_000))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(calls[0], 0, ctypes.byref(attr), 0) != 0:
        log.info("scheduler slice not set: %s", os.strerror(ctypes.get_errno()))
        return False
    return True


def current_slice_ms() -> float | None:
    """This thread's slice as the kernel reports it (None where it cannot say)."""
    calls = _syscalls()
    if calls is None:
        return None
    attr = _SchedAttr()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(calls[1], 0, ctypes.byref(attr), ctypes.sizeof(_SchedAttr), 0) != 0:
        return None
    return attr.sched_runtime / 1_000_000 if attr.sched_runtime else None

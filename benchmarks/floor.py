"""The speed floors a trace replay is compared with.

:func:`stream_floor` is one jitted pass over the three trace columns the simulator reads (``vpn`` int64,
``kind`` uint8, ``count`` int64 = 17 bytes per access) with a trivial reduction that depends on every byte, so
the compiler can neither drop the loads nor the loop. Its rate is the memory-bandwidth floor: no replay that
reads the trace once can be faster.

:func:`gather_floor` adds what a replay of a trace over ``npages`` pages cannot avoid either: one dependent
byte load per access from each of three per-page arrays (page-cache order, folio flags, PTE), at the page the
access names. On a trace whose pages are random this is the cache-miss floor of the 3-byte-per-page state; the
gap between :func:`stream_floor` and :func:`gather_floor` on a uniform trace is the price of random access
itself, before any simulation logic.
"""

from __future__ import annotations

import time

import numba
import numpy as np

__all__ = ["BYTES_PER_ACCESS", "best_of", "gather_floor", "measure_floor", "stream_floor"]

#: Bytes of trace read per access: vpn (int64) + kind (uint8) + count (int64).
BYTES_PER_ACCESS = 8 + 1 + 8


@numba.njit(cache=True, nogil=True, boundscheck=False)
def stream_floor(vpn, kind, count):
    """Read every access once; return a checksum of ``vpn ^ kind`` weighted by ``count``."""
    acc = np.int64(0)
    for i in range(vpn.shape[0]):
        acc += (vpn[i] ^ np.int64(kind[i])) * count[i]
    return acc


@numba.njit(cache=True, nogil=True, boundscheck=False)
def gather_floor(vpn, kind, count, base, a, b, c):
    """:func:`stream_floor` plus one byte load from each of ``a``, ``b``, ``c`` at page ``vpn[i] - base``."""
    acc = np.int64(0)
    n = a.shape[0]
    for i in range(vpn.shape[0]):
        p = (vpn[i] - base) % n
        acc += (np.int64(a[p]) + np.int64(b[p]) + np.int64(c[p]) + np.int64(kind[i])) * count[i]
    return acc


def best_of(fn, reps: int = 3, setup=None) -> dict[str, float]:
    """Call ``fn()`` ``reps`` times (after ``setup()`` each time, untimed); the fastest wall time wins.

    Returns
    -------
    dict
        ``seconds`` (best wall time), ``cpu_seconds`` (thread CPU time of that repetition: lower than
        ``seconds`` when other processes took the core), ``all`` (every wall time).
    """
    walls = []
    cpus = []
    for _ in range(reps):
        if setup is not None:
            setup()
        c0 = time.thread_time()
        t0 = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.thread_time() - c0)
    i = int(np.argmin(walls))
    return {"seconds": walls[i], "cpu_seconds": cpus[i], "all": walls}


def measure_floor(vpn, kind, count, reps: int = 3, npages: int | None = None) -> dict[str, float]:
    """Best-of-``reps`` rate of :func:`stream_floor` (and of :func:`gather_floor` over ``npages`` pages).

    Returns
    -------
    dict
        ``accesses_per_s``, ``gb_per_s`` (decimal GB of trace read per second), ``seconds``; with ``npages``
        also ``gather_accesses_per_s`` and ``gather_seconds``.
    """
    n = vpn.shape[0]
    stream_floor(vpn[:16], kind[:16], count[:16])  # compile / load from cache outside the timing
    t = best_of(lambda: stream_floor(vpn, kind, count), reps)
    out = {
        "accesses": n,
        "seconds": t["seconds"],
        "cpu_seconds": t["cpu_seconds"],
        "accesses_per_s": n / t["seconds"],
        "gb_per_s": n * BYTES_PER_ACCESS / t["seconds"] / 1e9,
    }
    if npages:
        a = np.zeros(npages, np.int8)
        b = np.zeros(npages, np.uint8)
        c = np.zeros(npages, np.uint8)
        base = int(vpn.min()) if n else 0
        gather_floor(vpn[:16], kind[:16], count[:16], base, a, b, c)
        g = best_of(lambda: gather_floor(vpn, kind, count, base, a, b, c), reps)
        out["gather_seconds"] = g["seconds"]
        out["gather_accesses_per_s"] = n / g["seconds"]
    return out

"""The TLB model's miss path, part by part: what one access costs the replay loop's inlined TLB code.

``python benchmarks/tlb_parts.py [--preset zen4] [--n 3000000]`` times, over a uniform random trace of
``n`` pages of a 4 GiB region (every access misses both levels once the TLB is warm) and a zipf one,
one jitted loop per line, best of 3, each from an empty TLB:

- ``lookup``: ``tlb_lookup``'s body alone (the TLB stays empty: every lookup misses both levels);
- ``walk``: the page walk alone (page-walk-cache probes and inserts);
- ``fill``: the fill alone (an insert in L1 and in L2);
- ``lookup + walk + fill``: what the replay loop does for an access whose translation exists.

These are the inlined twins the replay loop uses (``_lookup``, ``_walk``, ``_fill``), called from one
jitted loop: no call overhead, no fault path. The numbers are the cost of the modelled work itself.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fastfault._jit import jit
from fastfault.tlb import build_tlb, tlb_preset
from fastfault.tlb.model import _fill, _lookup, _walk


@jit
def _look(t, vpn):
    m = 0
    for i in range(vpn.shape[0]):
        m += _lookup(t, vpn[i], 0, -1, False, False)
    return m


@jit
def _walks(t, vpn):
    m = 0
    for i in range(vpn.shape[0]):
        m += _walk(t, vpn[i], 0)
    return m


@jit
def _fills(t, vpn):
    for i in range(vpn.shape[0]):
        _fill(t, vpn[i], 0, False, False)
    return 0


@jit
def _access(t, vpn):
    misses = 0
    for i in range(vpn.shape[0]):
        if _lookup(t, vpn[i], 0, -1, False, False) == 2:
            _walk(t, vpn[i], 0)
            _fill(t, vpn[i], 0, False, False)
            misses += 1
    return misses


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="zen4")
    ap.add_argument("--n", type=int, default=3_000_000)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(1)
    pages = 1 << 20
    base = 1 << 28
    uniform = rng.integers(0, pages, args.n) + base
    weights = np.arange(1, pages + 1, dtype=np.float64) ** -1.0
    cdf = np.cumsum(weights) / weights.sum()
    zipf = rng.permutation(pages)[np.minimum(np.searchsorted(cdf, rng.random(args.n)), pages - 1)] + base
    spec = tlb_preset(args.preset)
    print(f"TLB model miss path, preset {args.preset}, {args.n:,} accesses over {pages:,} pages (ns per access)")
    rows = [("uniform", "lookup", _look), ("uniform", "walk", _walks), ("uniform", "fill", _fills)]
    rows += [("uniform", "lookup + walk + fill", _access), ("zipf", "lookup + walk + fill", _access)]
    for trace, label, fn in rows:
        vpn = uniform if trace == "uniform" else zipf
        fn(build_tlb(spec), vpn[:100])  # compile or load
        best, out = float("inf"), 0
        for _ in range(3):
            t = build_tlb(spec)
            t0 = time.perf_counter()
            out = fn(t, vpn)
            best = min(best, time.perf_counter() - t0)
        extra = f"  ({out / args.n:.1%} missed both levels)" if fn is _access else ""
        print(f"  {trace:8s} {label:22s} {best / args.n * 1e9:7.1f}{extra}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

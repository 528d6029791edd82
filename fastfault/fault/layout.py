"""Drawing a page-cache folio layout: the jitted walk behind :func:`fastfault.model.folio_sizes_from_orders`."""

from __future__ import annotations

import numpy as np

from fastfault._jit import jit


@jit
def fill_folio_sizes(draws, orders, weights, out, w):
    """Walk a file from page 0, choosing each folio's order among those aligned at the index and fitting.

    Parameters
    ----------
    draws : float64, (>= n_folios,)
        Uniform [0, 1) numbers drawn by the caller from its seeded generator, one per folio.
    orders : int64, (k,)
        Candidate orders, ascending.
    weights : float64, (k,)
        Their relative weights.
    out : int64, (npages,)
        Filled with the folio size (pages) of every page.
    w : float64, (k,)
        Scratch.
    """
    npages = out.shape[0]
    k = orders.shape[0]
    i = 0
    d = 0
    while i < npages:
        total = 0.0
        for j in range(k):
            n = np.int64(1) << orders[j]
            ok = (i & (n - 1)) == 0 and i + n <= npages
            w[j] = weights[j] if ok else 0.0
            total += w[j]
        order = 0
        if total > 0.0:
            # searchsorted(cumsum(w) / total, draw, side="right"), clipped to the last order
            x = draws[d]
            acc = 0.0
            pick = k - 1
            for j in range(k):
                acc += w[j]
                if acc / total > x:
                    pick = j
                    break
            order = orders[pick]
        d += 1
        n = np.int64(1) << order
        for j in range(i, i + n):
            out[j] = n
        i += n

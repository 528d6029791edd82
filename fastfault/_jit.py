"""The one place that decides how kernels are compiled.

Every jitted kernel in fastfault is decorated with :func:`jit`. Caching is on
(compiled code lands in numba's cache next to the sources or in
``NUMBA_CACHE_DIR``), bounds checks are off, and errors follow numpy semantics.

The kernels run without numba's reference-counting runtime (``_nrt=False``): they
never allocate (callers pass every array in, scratch included), and without it a
call between kernels no longer increments and decrements a reference count for
every array of every state tuple it is passed -- the dominant cost of the
per-access path (benchmarks/README.md measures it). A kernel that allocated would
fail to compile, so the policy cannot silently leak.
Set ``NUMBA_DISABLE_JIT=1`` to run every kernel as plain Python (coverage can
then see inside them; the test suite runs once that way).
"""

from __future__ import annotations

import numba

#: Options shared by every kernel.
JIT_OPTIONS = {"cache": True, "nogil": True, "boundscheck": False, "error_model": "numpy", "_nrt": False}


def jit(func=None, **overrides):
    """Compile ``func`` with the project's policy (``numba.njit`` with :data:`JIT_OPTIONS`)."""
    options = {**JIT_OPTIONS, **overrides}
    if func is None:
        return lambda f: numba.njit(**options)(f)
    return numba.njit(**options)(func)

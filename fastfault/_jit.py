"""The one place that decides how kernels are compiled.

Every jitted kernel in fastfault is decorated with :func:`jit`. Caching is on
(compiled code lands in numba's cache next to the sources or in
``NUMBA_CACHE_DIR``), bounds checks are off, and errors follow numpy semantics.
Set ``NUMBA_DISABLE_JIT=1`` to run every kernel as plain Python (coverage can
then see inside them; the test suite runs once that way).
"""

from __future__ import annotations

import numba

#: Options shared by every kernel.
JIT_OPTIONS = {"cache": True, "nogil": True, "boundscheck": False, "error_model": "numpy"}


def jit(func=None, **overrides):
    """Compile ``func`` with the project's policy (``numba.njit`` with :data:`JIT_OPTIONS`)."""
    options = {**JIT_OPTIONS, **overrides}
    if func is None:
        return lambda f: numba.njit(**options)(f)
    return numba.njit(**options)(func)

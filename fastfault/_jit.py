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
Cached kernels are stamped with the whole package's sources (:class:`_PackageStamp`), not only
their own file, since they inline kernels of other modules.
Set ``NUMBA_DISABLE_JIT=1`` to run every kernel as plain Python (coverage can
then see inside them; the test suite runs once that way).
"""

from __future__ import annotations

import functools
import gc
import hashlib
from pathlib import Path

import numba
from numba.core import caching, event

_PACKAGE = Path(__file__).resolve().parent


@functools.cache
def package_source_stamp() -> str:
    """SHA-256 of every ``.py`` file of the package (paths and contents)."""
    h = hashlib.sha256()
    for path in sorted(_PACKAGE.rglob("*.py")):
        h.update(str(path.relative_to(_PACKAGE)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


class _PackageStamp:
    """Locator mixin: the source stamp of a fastfault kernel is the whole package's.

    numba stamps a cached function with its own file only, but the kernels inline (and link) kernels
    of other modules: editing ``tlb/model.py`` would leave ``fault/replay.py``'s cached replay loop
    running the old TLB code on the new state layout. Stamping every kernel with the package's
    sources makes any change recompile everything."""

    @classmethod
    def from_function(cls, py_func, py_file):
        try:
            if not Path(py_file).resolve().is_relative_to(_PACKAGE):
                return None
        except OSError:
            return None
        return super().from_function(py_func, py_file)

    def get_source_stamp(self):
        return package_source_stamp()


class _PackageUserProvidedLocator(_PackageStamp, caching.UserProvidedCacheLocator):
    pass


class _PackageInTreeLocator(_PackageStamp, caching.InTreeCacheLocator):
    pass


if _PackageInTreeLocator not in caching.CacheImpl._locator_classes:
    caching.CacheImpl._locator_classes[:0] = [_PackageUserProvidedLocator, _PackageInTreeLocator]


class _FewerGcWhileCompiling(event.Listener):
    """Python's cyclic garbage collector runs less often while numba compiles: numba's compiler
    makes millions of short-lived objects, and with the default thresholds the collections they
    trigger (each traversing every live object) were a third of an empty-cache first run (124 s ->
    81 s measured; turning collection off altogether: 92 s but twice the peak memory, 3.3 GB).
    The default thresholds come back when the outermost compile ends."""

    depth = 0
    thresholds = (700, 10, 10)

    def on_start(self, ev):
        if self.depth == 0:
            self.thresholds = gc.get_threshold()
            gc.set_threshold(100_000, 50, 100)
        self.depth += 1

    def on_end(self, ev):
        self.depth -= 1
        if self.depth == 0:
            gc.set_threshold(*self.thresholds)


event.register("numba:compile", _FewerGcWhileCompiling())

#: Options shared by every kernel.
JIT_OPTIONS = {"cache": True, "nogil": True, "boundscheck": False, "error_model": "numpy", "_nrt": False}


def inlined(kernel):
    """The ``inline="always"`` twin of the jitted ``kernel``: the same Python function, for the one
    hot call site that should not pay a call (numba inlines its IR into the caller), while every
    other caller shares ``kernel``'s single compiled copy. Inlining everywhere would compile a copy
    per call site (each one typed again with its caller)."""
    # under NUMBA_DISABLE_JIT=1 ``kernel`` is the plain function itself
    return numba.njit(**{**JIT_OPTIONS, "inline": "always"})(getattr(kernel, "py_func", kernel))


def jit(func=None, **overrides):
    """Compile ``func`` with the project's policy (``numba.njit`` with :data:`JIT_OPTIONS`)."""
    options = {**JIT_OPTIONS, **overrides}
    if func is None:
        return lambda f: numba.njit(**options)(f)
    return numba.njit(**options)(func)

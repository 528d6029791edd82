"""The JIT policy of fastfault/_jit.py: cache stamps cover the whole package; compiles collect less."""

from __future__ import annotations

import gc

from numba.core import caching

from fastfault._jit import _PackageInTreeLocator, _PackageUserProvidedLocator, jit, package_source_stamp
from fastfault.fault.replay import replay_trace


def test_kernel_cache_is_stamped_with_the_package_sources():
    """A kernel inlines kernels of other modules, so its cache entry must go stale when any of them
    changes: its locator stamps it with every source file of the package."""
    impl = caching.CompileResultCacheImpl(replay_trace.py_func)
    assert isinstance(impl.locator, (_PackageInTreeLocator, _PackageUserProvidedLocator))
    assert impl.locator.get_source_stamp() == package_source_stamp()
    assert len(package_source_stamp()) == 64


def test_functions_outside_the_package_keep_numbas_locator(tmp_path, monkeypatch):
    mod = tmp_path / "outside_mod.py"
    mod.write_text("def f(x):\n    return x + 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import outside_mod

    impl = caching.CompileResultCacheImpl(outside_mod.f)
    assert not isinstance(impl.locator, (_PackageInTreeLocator, _PackageUserProvidedLocator))


def test_gc_thresholds_are_restored_after_a_compile():
    before = gc.get_threshold()

    @jit(cache=False)
    def add(a, b):
        return a + b

    assert add(2, 3) == 5
    assert gc.get_threshold() == before

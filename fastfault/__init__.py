"""fastfault: Linux's file-backed page-fault path, simulated at high throughput.

The package is laid out like the system it models:

- :mod:`fastfault.fault` -- the jitted fault path (``mm/memory.c``, ``mm/filemap.c``, ``mm/readahead.c``);
- :mod:`fastfault.model` -- building a page cache, an address space and knobs; running traces;
- :mod:`fastfault.kernel` -- the live kernel as ground truth (cases, ``check``, ``record``, ``layout``);
- :mod:`fastfault.trace` and :mod:`fastfault.workloads` -- recorded and generated accesses;
- :mod:`fastfault.cli` -- the ``fastfault`` command.

Importing the package does not import numba; the jitted kernels load on first use.
"""

__version__ = "0.1.0"

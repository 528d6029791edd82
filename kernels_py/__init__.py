"""Pure-Python reference of the simulated fault path: the oracle of the differential tests.

Each module mirrors one module of :mod:`fastfault.fault` (same function names, same signatures,
same :class:`~fastfault.fault.state.SimState` arrays and counter conventions) but is written
independently from the kernel source, readable side by side with it:

- :mod:`kernels_py.pgtable` -- ``set_pte_range``/``do_set_pte``, ``do_set_pmd``,
  ``thp_vma_suitable_order`` (``mm/memory.c``, ``include/linux/huge_mm.h``);
- :mod:`kernels_py.readahead` -- ``mm/readahead.c`` and page-cache insertion;
- :mod:`kernels_py.filemap` -- ``filemap_map_pages`` and helpers, ``filemap_fault``, mmap readahead
  (``mm/filemap.c``);
- :mod:`kernels_py.memory` -- ``handle_mm_fault`` down to ``finish_fault`` (``mm/memory.c``), with the
  arch handler's per-VMA-lock / mmap_lock retry loop;
- :mod:`kernels_py.replay` -- the trace loop with TLB lookups, walks, fills and flushes and the aging
  passes, ``clear_refs`` and ``smaps`` (``fs/proc/task_mmu.c``);
- :mod:`kernels_py.tlb` -- the TLB hierarchy (:mod:`fastfault.tlb.model`);
- :mod:`kernels_py.reclaim` -- reclaim aging (:mod:`fastfault.reclaim`): ``folio_referenced``,
  ``folio_check_references``, MGLRU look-around.

The main path is Linux 6.18.5; the v6.6 and v5.12 profiles are branches inside each function. No
numba: the :mod:`fastfault` imports are the numba-free code modules (:mod:`fastfault.fault.state`,
:mod:`fastfault.tlb.presets`, :mod:`fastfault.reclaim_codes`).
"""

from kernels_py import filemap, memory, pgtable, readahead, reclaim, replay, tlb

__all__ = ["filemap", "memory", "pgtable", "readahead", "reclaim", "replay", "tlb"]

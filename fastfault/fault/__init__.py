"""The file-backed fault path, jitted.

Module by module it mirrors the kernel:

- :mod:`fastfault.fault.state` -- flat arrays and integer codes (page cache, VMAs, page tables, counters);
- :mod:`fastfault.fault.memory` -- ``mm/memory.c``: ``do_read_fault``, ``do_fault_around``, ``finish_fault``,
  ``set_pte_range``, ``do_set_pmd``, ``do_cow_fault``, ``do_shared_fault``, ``do_wp_page``;
- :mod:`fastfault.fault.filemap` -- ``mm/filemap.c``: ``filemap_map_pages`` and its helpers, ``filemap_fault``;
- :mod:`fastfault.fault.readahead` -- ``mm/readahead.c`` and the mmap read-around of ``mm/filemap.c``;
- :mod:`fastfault.fault.replay` -- ``handle_mm_fault`` and the trace loop (one call per replay).
"""

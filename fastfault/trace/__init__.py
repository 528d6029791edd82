"""Access traces: the container and file format, lackey import, and recording under valgrind.

The container (:mod:`fastfault.trace.format`) is numpy-only; the lackey parser and recorder
load numba when imported.
"""

from __future__ import annotations

from fastfault.trace.format import (
    PAGE_SHIFT,
    PAGE_SIZE,
    FileAccesses,
    Mapping,
    Trace,
    collapse_runs,
    expand_runs,
    file_pages,
    load_trace,
    make_trace,
    mapping_index,
    save_trace,
)

__all__ = [
    "PAGE_SHIFT",
    "PAGE_SIZE",
    "FileAccesses",
    "Mapping",
    "Trace",
    "collapse_runs",
    "expand_runs",
    "file_pages",
    "load_trace",
    "make_trace",
    "mapping_index",
    "save_trace",
]

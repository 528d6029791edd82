"""TLB hierarchy model: specs and presets (:mod:`.presets`), jitted kernels (:mod:`.model`).

Importing this package does not import numba; the kernels load on first use of one of their
names (``from fastfault.tlb import tlb_lookup`` compiles nothing until called).
"""

from __future__ import annotations

from fastfault.tlb.presets import (
    ENTRY_DIRTY,
    TLB_PRESETS,
    EntrySize,
    PageKind,
    PwcSpec,
    Replacement,
    TlbArray,
    TlbCtl,
    TlbLevel,
    TlbLookup,
    TlbSpec,
    TlbStat,
    load_tlb_toml,
    tlb_preset,
)

_MODEL_NAMES = (
    "COALESCE_AMD",
    "COALESCE_CONTPTE",
    "COALESCE_NONE",
    "TlbState",
    "lookup_kind",
    "mapping_kind",
    "build_tlb",
    "run_tlb",
    "tlb_access",
    "tlb_add_hits",
    "tlb_fill",
    "tlb_flush_all",
    "tlb_flush_page",
    "tlb_flush_range",
    "tlb_lookup",
    "tlb_lookup_coalesced",
    "tlb_stats",
    "tlb_walk",
)

__all__ = [
    "ENTRY_DIRTY",
    "TLB_PRESETS",
    "EntrySize",
    "PageKind",
    "PwcSpec",
    "Replacement",
    "TlbArray",
    "TlbCtl",
    "TlbLevel",
    "TlbLookup",
    "TlbSpec",
    "TlbStat",
    "load_tlb_toml",
    "tlb_preset",
    *_MODEL_NAMES,
]


def __getattr__(name):
    if name in _MODEL_NAMES:
        from fastfault.tlb import model

        return getattr(model, name)
    raise AttributeError(f"module 'fastfault.tlb' has no attribute {name!r}")

"""Figures of sweep results in one shared style (``fastfault.mplstyle``).

>>> from fastfault.sweep import load_results
>>> from fastfault.plotting import save_figures, faults_vs_fault_around, style
>>> df = load_results("out/fault_around")                     # doctest: +SKIP
>>> written, notes = save_figures(df, "out/fault_around/figures")  # doctest: +SKIP

Functions return :class:`matplotlib.figure.Figure` objects without touching pyplot's global
state, so they work the same under the Agg backend (``fastfault plot``) and in notebooks.
Importing this package imports neither numba nor matplotlib.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "FIGURES",
    "PALETTE",
    "STYLE",
    "SkipFigure",
    "access_flag_faults",
    "cost_breakdown",
    "false_young",
    "fault_around_heatmap",
    "fault_around_tradeoff",
    "faults_vs_fault_around",
    "format_bytes",
    "kernel_profiles",
    "mapping_cost",
    "pmd_mappings",
    "reclaim_aging",
    "save_figures",
    "style",
    "tlb_misses",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        from fastfault.plotting import figures

        return getattr(figures, name)
    raise AttributeError(f"module 'fastfault.plotting' has no attribute {name!r}")

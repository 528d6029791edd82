"""Generated workloads: seeded synthetic access patterns over synthetic file mappings.

See :mod:`fastfault.workloads.generators`; ``make_workload("zipf", seed=1, n=10_000)``.
"""

from __future__ import annotations

from fastfault.workloads.generators import (
    DEFAULT_ALIGN,
    DEFAULT_BASE,
    WORKLOADS,
    hot_cold,
    make_workload,
    multi_file,
    phases,
    program_start,
    reverse,
    sequential,
    strided,
    uniform_random,
    workload_params,
    zipf,
)

__all__ = [
    "DEFAULT_ALIGN",
    "DEFAULT_BASE",
    "WORKLOADS",
    "hot_cold",
    "make_workload",
    "multi_file",
    "phases",
    "program_start",
    "reverse",
    "sequential",
    "strided",
    "uniform_random",
    "workload_params",
    "zipf",
]

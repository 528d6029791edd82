"""Parameter sweeps: experiment files, local/Dask execution with durable results, the tidy table.

Typical use (what ``fastfault sweep`` and the notebooks do)::

    from fastfault.sweep import load_experiment, run_sweep, load_results

    exp = load_experiment("experiments/fault_around.toml", scale=0.25)
    summary = run_sweep(exp, "out/fault_around", workers=2)
    df = load_results("out/fault_around")

- :mod:`fastfault.sweep.config` -- TOML -> validated :class:`Experiment` (points, replicates, runs);
- :mod:`fastfault.sweep.runner` -- :func:`run_sweep`: process pool or Dask, durability, resume;
- :mod:`fastfault.sweep.results` -- ``results.parquet``, ``meta.json``, atomic writes.

Importing this package does not import numba.
"""

from __future__ import annotations

from fastfault.sweep.config import (
    KNOBS,
    Experiment,
    Point,
    Run,
    WorkloadSpec,
    load_experiment,
    parse_experiment,
)
from fastfault.sweep.results import load_results
from fastfault.sweep.runner import SweepInterrupted, SweepSummary, execute, run_sweep

__all__ = [
    "KNOBS",
    "Experiment",
    "Point",
    "Run",
    "SweepInterrupted",
    "SweepSummary",
    "WorkloadSpec",
    "execute",
    "load_experiment",
    "load_results",
    "parse_experiment",
    "run_sweep",
]

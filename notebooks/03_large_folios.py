# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Experiment 3: large folios, THP and fault-around
#
# Since Linux 6.18 a file fault maps the whole large folio it hits. A PMD-size (2 MiB) folio in an
# aligned VMA is mapped by a single huge PMD. `experiments/large_folios.toml` varies the share of
# 2 MiB regions held by one PMD-size folio (`thp_ratio`) against `fault_around_bytes`.
#
# Environment knobs: `FASTFAULT_NB_SCALE` (workload size factor, default 0.25 here),
# `FASTFAULT_NB_WORKERS` (worker processes, default all cores), `FASTFAULT_NB_OUT` (output
# directory, default a temporary one).

# %%
# %matplotlib inline
import os
import tempfile
from pathlib import Path

from IPython.display import display

from fastfault.plotting import (
    SkipFigure,
    fault_around_heatmap,
    faults_vs_fault_around,
    pmd_mappings,
    style,
    tlb_misses,
)
from fastfault.sweep import load_experiment, load_results, run_sweep

ROOT = next(p for p in [Path.cwd(), *Path.cwd().parents] if (p / "experiments").is_dir())
SCALE = float(os.environ.get("FASTFAULT_NB_SCALE", "0.25"))
WORKERS = int(os.environ["FASTFAULT_NB_WORKERS"]) if os.environ.get("FASTFAULT_NB_WORKERS") else None
OUT = Path(os.environ.get("FASTFAULT_NB_OUT") or tempfile.mkdtemp(prefix="fastfault-nb-")) / "large_folios"

# %%
exp = load_experiment(ROOT / "experiments" / "large_folios.toml", scale=SCALE)
print(f"{exp.name}: {len(exp.points)} points x {exp.replicates} replicates, scale {exp.scale:g}")
summary = run_sweep(exp, OUT, workers=WORKERS, force=True, progress=False)
print(summary.line())
df = load_results(OUT)

# %% [markdown]
# ## Faults: window against large-folio share
#
# With no large folios (`thp_ratio` 0%) the window decides everything. With only PMD-size folios
# (100%) one fault per 2 MiB region remains, whatever the window. Between the two, a larger
# window mostly helps where small folios remain.

# %%
with style():
    display(fault_around_heatmap(df))

# %%
pivot = df.pivot_table(index="param_thp_ratio", columns="param_fault_around_bytes", values="faults_per_1k")
pivot.columns = [f"{c // 1024}K" for c in pivot.columns]
pivot.round(2)

# %% [markdown]
# ## PMD mappings
#
# Each PMD-size folio that a VMA maps in full and aligned is mapped by one huge PMD
# (`pmd_mapped`, the kernel's `THP_FILE_MAPPED`). It then needs no PTE table.

# %%
with style():
    display(pmd_mappings(df))
    display(faults_vs_fault_around(df))

# %% [markdown]
# ## TLB misses
#
# TLB misses per 1000 accesses come from the TLB model, a simulator extension. Enable it with
# `tlb` in the experiment's `[fixed]` table (see the NOTE in `large_folios.toml`). Until then the
# figure is skipped.

# %%
try:
    with style():
        display(tlb_misses(df))
except SkipFigure as why:
    print(f"tlb_misses: skipped, {why}")

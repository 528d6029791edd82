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
# # Experiment 2: old or young prefaulted PTEs?
#
# `experiments/prefault_policy.toml` sweeps the prefault policy (young or old) on three
# architectures (x86-64; arm64 with a hardware access flag; arm64 without one) and three
# fault-around windows, over four workloads. This notebook runs it through the Python API of the
# sweep (`fastfault.sweep`), which is what `fastfault sweep` runs too, then reads `results.parquet`.
#
# Environment knobs: `FASTFAULT_NB_SCALE` multiplies the workload sizes (default 0.25 here; the
# test suite uses a tiny value), `FASTFAULT_NB_WORKERS` sets the worker processes (default: all
# cores) and `FASTFAULT_NB_OUT` the output directory (default: a temporary one).

# %%
# %matplotlib inline
import os
import tempfile
from pathlib import Path

from IPython.display import display

from fastfault.plotting import (
    SkipFigure,
    access_flag_faults,
    cost_breakdown,
    false_young,
    faults_vs_fault_around,
    reclaim_aging,
    save_figures,
    style,
)
from fastfault.sweep import load_experiment, load_results, run_sweep

ROOT = next(p for p in [Path.cwd(), *Path.cwd().parents] if (p / "experiments").is_dir())
SCALE = float(os.environ.get("FASTFAULT_NB_SCALE", "0.25"))
WORKERS = int(os.environ["FASTFAULT_NB_WORKERS"]) if os.environ.get("FASTFAULT_NB_WORKERS") else None
OUT = Path(os.environ.get("FASTFAULT_NB_OUT") or tempfile.mkdtemp(prefix="fastfault-nb-")) / "prefault_policy"

# %% [markdown]
# ## Load, validate and run the experiment
#
# `load_experiment` expands the experiment into points and checks every point before anything
# runs. `run_sweep` makes each finished run durable, so an interrupted notebook can call it again
# with `resume=True`.

# %%
exp = load_experiment(ROOT / "experiments" / "prefault_policy.toml", scale=SCALE)
print(f"{exp.name}: {len(exp.points)} points x {exp.replicates} replicates, scale {exp.scale:g}")
print("swept:", {k: v for k, v in exp.axes.items()})
summary = run_sweep(exp, OUT, workers=WORKERS, force=True, progress=False)
print(summary.line())

# %%
df = load_results(OUT)
df.head()

# %% [markdown]
# ## Access-flag faults and first touches of old PTEs
#
# Averaged over workloads, windows and replicates. On x86-64 and on arm64 with a hardware access
# flag, an old PTE costs no fault: the MMU sets the bit (`old_to_young_hw`). On `arm64-nohaf` every
# first touch of an old PTE is an access-flag fault (`fault_af`).

# %%
cols = [
    "faults_per_1k",
    "fault_af",
    "old_to_young_hw",
    "ptes_old",
    "false_young_fraction",
    "est_cycles_per_access",
]
summary_table = df.groupby(["param_arch", "param_prefault"])[cols].mean().round(2)
display(summary_table)

# %%
with style():
    display(access_flag_faults(df))
    display(faults_vs_fault_around(df))

# %% [markdown]
# ## False-young pages, reclaim aging and estimated cost
#
# A *false-young* page is a prefaulted page that was installed young and never used. Reclaim
# sees its accessed bit and keeps it, as if it had been used. The experiment runs reclaim aging as
# a census (`aging_interval`): every pass records what it would keep and what it would evict. The
# cost model turns the event counts (faults, PTEs set, accessed-bit updates, TLB misses and page
# walks) into estimated cycles. If a simulator extension is switched off in the experiment, its
# figure is skipped with a note.

# %%
for fig_fn in (false_young, reclaim_aging, cost_breakdown):
    try:
        with style():
            display(fig_fn(df))
    except SkipFigure as why:
        print(f"{fig_fn.__name__}: skipped, {why}")

# %% [markdown]
# ## The same figures on disk
#
# `fastfault plot DIR` writes these as PNG and SVG. The call below does the same from Python (PNG only).

# %%
written, notes = save_figures(df, OUT / "figures", formats=("png",))
print("\n".join(str(p.name) for p in written))
print("\n".join(notes))

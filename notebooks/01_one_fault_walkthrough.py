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
# # One page fault, step by step
#
# This notebook builds the smallest useful machine with `fastfault.model`: one 256 KiB file in
# the page cache, mapped by one VMA. It then follows a single read fault through the fault path.
# It shows
#
# 1. the **fault-around window** `do_fault_around()` computes from `fault_around_bytes`;
# 2. which PTEs the fault installs, and whether they are **young** (accessed bit set) or **old**,
#    which depends on the architecture (`arch_wants_old_prefaulted_pte()`);
# 3. how Linux 6.18 maps a **whole large folio** where 6.6 stops at the window;
# 4. what a later touch of an old PTE costs without a hardware access flag: an **access-flag fault**.
#
# Everything here runs the same jitted kernels as `fastfault run` and `fastfault sweep`.

# %%
# %matplotlib inline
import numpy as np
from IPython.display import display
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from fastfault.fault.state import PTE
from fastfault.model import Config, FileSpec, Simulator, VmaSpec
from fastfault.plotting import PALETTE, format_bytes, style

# %% [markdown]
# ## The file and its page cache
#
# The file has 64 pages (4 KiB each). Most are order-0 folios (single pages). Pages 16-31 are one
# 64 KiB folio (order 4) and pages 32-35 one 16 KiB folio (order 2). Pages 40-47 are **not in the
# page cache**: fault-around skips them, and touching one would be a major fault.
# `folio_size[i]` is the size, in pages, of the folio that holds page *i* (-1: not cached).

# %%
NPAGES = 64
folio_size = np.ones(NPAGES, dtype=np.int64)
folio_size[16:32] = 16
folio_size[32:36] = 4
folio_size[40:48] = -1
FILE = FileSpec.from_folio_sizes(folio_size, name="demo.dat")
VMA_START = 0x7F0000000000  # 2 MiB aligned: the VMA starts a PTE table
VMA = VmaSpec(start=VMA_START, pages=NPAGES, shared=False)
print(FILE)

# %% [markdown]
# ## The fault-around window
#
# On a read fault in a file mapping, `do_fault_around()` maps the pages around the faulting one
# that are already in the page cache. The window has `fault_around_bytes / 4096` pages. It is
# aligned to its own size and clipped to the VMA and to the PTE table (the 2 MiB region) of the
# faulting address. Since v6.4 (`mm/memory.c`) the window is:
#
# ```
# from = max(ALIGN_DOWN(pte_off, nr_pages), pte_off - min(pte_off, vma_off))
# to   = min(from + nr_pages, PTRS_PER_PTE, pte_off + vma_pages - vma_off) - 1
# ```


# %%
def window(page: int, fault_around_bytes: int, vma_pages: int = NPAGES) -> tuple[int, int]:
    """First and last page of the fault-around window (VMA starting a PTE table, pgoff 0)."""
    n = max(fault_around_bytes // 4096, 1)
    lo = max(page - page % n, 0)
    hi = min(lo + n, 512, vma_pages) - 1
    return lo, hi


print(window(5, 32768), window(26, 32768))


# %% [markdown]
# ## One fault, four machines
#
# The cell below replays one load of page 5, then separately one load of page 26 (inside the
# 64 KiB folio), with a 32 KiB window. Each runs on a fresh simulator per configuration. We then
# read the simulated page table: `sim.state.pte` holds one byte of `PTE` flags per page of the VMA.


# %%
def fault_once(page: int, *, arch: str, profile: str = "linux-6.18", fault_around: int = 32768) -> Simulator:
    sim = Simulator([FILE], [VMA], Config(arch=arch, profile=profile, fault_around_bytes=fault_around))
    sim.run(np.array([(VMA_START >> 12) + page]))
    return sim


CONFIGS = [
    ("x86_64", "linux-6.18"),
    ("arm64", "linux-6.18"),
    ("arm64", "linux-6.6"),
    ("arm64-nohaf", "linux-6.18"),
]
runs = {}
for arch, prof in CONFIGS:
    for page in (5, 26):
        runs[(arch, prof, page)] = fault_once(page, arch=arch, profile=prof)
for (arch, prof, page), sim in runs.items():
    c = sim.counters()
    print(
        f"{arch:12s} {prof:10s} page {page:2d}: {c['minflt']} fault, "
        f"fault-around mapped {c['faultaround_pages']:2d} PTEs ({c['ptes_young']} young, {c['ptes_old']} old)"
    )

# %% [markdown]
# ## The page table after the fault
#
# Each row is one machine and each cell one page of the VMA. Blue cells are PTEs installed
# **young**, orange cells PTEs installed **old**, and grey cells have no PTE. Hatched pages are not
# in the page cache. The black outline marks the faulting page and the bracket the 32 KiB window.
# Thin vertical lines separate folios.

# %%
STATE_COLORS = {"none": "#E8E8E8", "young": PALETTE[0], "old": PALETTE[1]}


def pte_states(sim: Simulator) -> list[str]:
    out = []
    for p in sim.state.pte[:NPAGES]:
        if not p & PTE.PRESENT:
            out.append("none")
        else:
            out.append("young" if p & PTE.YOUNG else "old")
    return out


def draw_page_table(ax, sim: Simulator, page: int, title: str) -> None:
    for i, state in enumerate(pte_states(sim)):
        ax.add_patch(
            Rectangle(
                (i, 0),
                1,
                1,
                facecolor=STATE_COLORS[state],
                edgecolor="white",
                linewidth=0.6,
                hatch="////" if folio_size[i] < 0 else None,
            )
        )
    heads = [i for i in range(NPAGES) if folio_size[i] > 0 and i % folio_size[i] == 0 and folio_size[i] > 1]
    for h in heads:
        ax.plot([h, h], [-0.1, 1.1], color="#333333", linewidth=1.0)
        ax.plot([h + folio_size[h]] * 2, [-0.1, 1.1], color="#333333", linewidth=1.0)
        ax.text(
            h + folio_size[h] / 2,
            1.18,
            f"{format_bytes(folio_size[h] * 4096)} folio",
            ha="center",
            fontsize=7,
        )
    ax.add_patch(Rectangle((page, 0), 1, 1, fill=False, edgecolor="black", linewidth=2.0))
    lo, hi = window(page, 32768)
    ax.annotate(
        "",
        xy=(lo, -0.35),
        xytext=(hi + 1, -0.35),
        arrowprops={"arrowstyle": "|-|", "color": "#333333"},
    )
    ax.text((lo + hi + 1) / 2, -0.75, "fault-around window (32 KiB)", ha="center", fontsize=7)
    ax.set_xlim(-0.5, NPAGES + 0.5)
    ax.set_ylim(-1.0, 1.5)
    ax.set_yticks([])
    ax.set_title(title, loc="left", fontsize=9)
    ax.grid(False)
    for side in ("left", "top", "right"):
        ax.spines[side].set_visible(False)


with style():
    fig = Figure(figsize=(11, 9.5), layout="constrained")
    axes = fig.subplots(len(CONFIGS) * 2, 1)
    k = 0
    for page in (5, 26):
        for arch, prof in CONFIGS:
            sim = runs[(arch, prof, page)]
            c = sim.counters()
            draw_page_table(
                axes[k],
                sim,
                page,
                f"{arch}, {prof}: load of page {page} -> {c['faultaround_pages']} PTEs "
                f"({c['ptes_young']} young, {c['ptes_old']} old)",
            )
            k += 1
    axes[-1].set_xlabel("page of the VMA (4 KiB each)")
    fig.legend(
        [Patch(facecolor=v, edgecolor="#999999") for v in STATE_COLORS.values()]
        + [Patch(facecolor="white", edgecolor="#999999", hatch="////")],
        ["no PTE", "PTE young", "PTE old", "not in page cache"],
        loc="outside lower center",
        ncols=4,
    )
    fig.suptitle("One read fault: the PTEs fault-around installs")
display(fig)

# %% [markdown]
# What the picture shows:
#
# * **x86-64** installs every prefaulted PTE young. Its MMU sets the accessed bit in hardware
#   anyway, and old PTEs once cost a measurable first-touch slowdown there (Linux reverted old
#   prefault on x86 in 2016).
# * **arm64 with FEAT_HAFDBS** asks for old prefaulted PTEs. Only the faulting page is young, so
#   reclaim can tell prefaulted pages that were never used from pages that were.
# * **arm64 without a hardware access flag** prefaults young, because an old PTE would cost a
#   fault on first touch.
# * In the 64 KiB folio, **6.18** maps the whole folio (16 PTEs), past the 32 KiB window, while
#   **6.6** stops at the window. The batch holding the faulting page is young.

# %% [markdown]
# ## The price of an old PTE without a hardware access flag
#
# Force old prefault on `arm64-nohaf` (`Config(prefault="old")`) and touch a prefaulted page. The
# MMU cannot set the accessed bit itself, so the access traps: an access-flag fault
# (`fault_af`), which is counted as a minor fault.

# %%
for arch, prefault in [("arm64", None), ("arm64-nohaf", "old")]:
    sim = Simulator([FILE], [VMA], Config(arch=arch, prefault=prefault, fault_around_bytes=32768))
    sim.run(np.array([(VMA_START >> 12) + 5, (VMA_START >> 12) + 6]))
    c = sim.counters()
    print(
        f"{arch:12s} prefault={prefault or 'arch default':12s} faults={c['minflt']} "
        f"(access-flag faults {c['fault_af']}, hardware set the bit {c['old_to_young_hw']} times)"
    )

# %% [markdown]
# The same comparison over whole workloads, architectures and window sizes is experiment 2
# (`experiments/prefault_policy.toml`; notebook `02_prefault_policy`).

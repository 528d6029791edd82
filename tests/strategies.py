"""Hypothesis strategies for simulator inputs: files, VMAs, knobs and multi-phase traces.

A :class:`Case` is everything one run needs; :func:`cases` draws one for a given kernel profile.
Per-page layouts are generated with numpy from a drawn seed (drawing thousands of list elements
through hypothesis would be slow); the knobs that matter (sizes, orders, probabilities, offsets,
trace pieces) are drawn directly so that hypothesis can shrink them.

Other test modules may reuse :func:`file_specs`, :func:`vma_layouts`, :func:`configs`,
:func:`traces` and :func:`cases`; :func:`build_states` turns a case into two independent copies
of the initial :class:`~fastfault.fault.state.SimState`, and :func:`reproducer` prints a case as
Python code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from hypothesis import strategies as st

from fastfault.fault.state import PG, SimState
from fastfault.model import ARCHES, Config, FileSpec, Simulator, VmaSpec

PROFILES = ("linux-5.12", "linux-6.6", "linux-6.18")
FAULT_AROUND_BYTES = (0, 4096, 16384, 65536, 131072, 2 * 1024 * 1024)
ADVICE = (None, "random", "sequential", "hugepage", "nohugepage")
#: First virtual page number used for mappings (0x7f0000000000 >> 12), 2 MiB aligned.
BASE_VPN = 0x7F0000000
PMD_PAGES = 512


@dataclass
class Case:
    """One simulation input: files, mappings, knobs, trace phases and extra page-cache flags."""

    files: list[FileSpec]
    vmas: list[VmaSpec]
    config: Config
    phases: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
    #: (file, page) pairs of uncached pages that hold a workingset shadow entry (``PG.SHADOW``).
    shadows: list[tuple[int, int]] = field(default_factory=list)
    #: (file, head page) pairs of cached folios with ``PG_referenced`` set.
    referenced: list[tuple[int, int]] = field(default_factory=list)
    #: (file, head page) pairs of cached folios that are not uptodate (a failed read, unlocked).
    not_uptodate: list[tuple[int, int]] = field(default_factory=list)


# --- files ----------------------------------------------------------------------------------------


def _layout(npages: int, orders: list[int], straddle: bool, rng: np.random.Generator) -> np.ndarray:
    """Folio sizes per page: naturally aligned folios of the given orders; the last one may reach past
    EOF when ``straddle``."""
    out = np.empty(npages, dtype=np.int64)
    orders = sorted(orders)
    draws = rng.integers(0, 1 << 30, size=npages + 1).tolist()
    i = 0
    d = 0
    while i < npages:
        ok = [o for o in orders if (i & ((1 << o) - 1)) == 0 and (straddle or i + (1 << o) <= npages)]
        order = ok[draws[d] % len(ok)] if ok else 0
        d += 1
        n = 1 << order
        out[i : i + n] = n
        i += n
    return out


@st.composite
def file_specs(draw, max_pages: int = 3000) -> tuple[FileSpec, list[int], list[int]]:
    """One file: size, folio layout (mixed orders, some uncached, some flagged), readahead knobs.

    Returns the :class:`FileSpec`, the uncached pages that get a shadow entry, the cached folio
    heads that get ``PG_referenced`` and those that are not uptodate.
    """
    npages = draw(
        st.one_of(
            st.integers(1, 40),
            st.integers(1, 600),
            st.sampled_from([1, 15, 16, 17, 511, 512, 513, 1024, 1536]),
            st.integers(1, max_pages),
        )
    )
    tail = draw(st.sampled_from([0, 0, 1, 2048, 4095]))
    i_size = npages * 4096 - tail
    orders = draw(
        st.one_of(
            st.sampled_from([[0], [9], [0, 9], [0, 2, 4], [4], [6], [2, 3, 4, 5, 6, 7, 8, 9]]),
            st.lists(st.integers(0, 9), min_size=1, max_size=4, unique=True),
        )
    )
    # one draw for the rest of the knobs (fewer draws keep generation cheap)
    knobs = draw(st.integers(0, 2**62))
    seed = knobs & 0xFFFFFFFF
    pick = np.random.default_rng(knobs >> 32)
    straddle = bool(pick.integers(2))
    p_uncached = float(pick.choice([0.0, 0.0, 0.1, 0.3, 0.7, 1.0]))
    p_locked, p_ra, p_ws, p_shadow, p_ref = (float(x) for x in pick.choice([0.0, 0.0, 0.05, 0.2, 0.5], size=5))
    p_nu = float(pick.choice([0.0, 0.0, 0.0, 0.05, 0.2]))
    ra_pages = int(pick.choice([0, 32, 32]))
    max_folio_order = int(pick.choice([0, 9, 9]))
    rng = np.random.default_rng(seed)
    sizes = _layout(npages, orders, straddle, rng)
    heads = np.flatnonzero((np.arange(npages) & (sizes - 1)) == 0)
    uncached_heads = heads[rng.random(heads.size) < p_uncached]
    for h in uncached_heads:
        sizes[h : h + int(sizes[h])] = -1
    cached = sizes > 0

    def flags(p):
        return (rng.random(npages) < p) & cached

    spec = FileSpec(
        i_size=i_size,
        folio_size=sizes,
        ra_pages=ra_pages,
        max_folio_order=max_folio_order,
        locked=flags(p_locked),
        readahead=flags(p_ra),
        workingset=flags(p_ws),
    )
    shadows = [int(p) for p in np.flatnonzero(~cached & (rng.random(npages) < p_shadow))]
    cached_heads = [int(h) for h in heads if sizes[h] > 0]
    referenced = [h for h in cached_heads if rng.random() < p_ref]
    not_uptodate = [h for h in cached_heads if rng.random() < p_nu]
    return spec, shadows, referenced, not_uptodate


# --- mappings -------------------------------------------------------------------------------------


@st.composite
def vma_layouts(draw, files: list[FileSpec]) -> list[VmaSpec]:
    """1-3 non-overlapping file mappings, 2 MiB aligned or not, shorter or longer than the file."""
    n = draw(st.integers(1, 3))
    cursor = BASE_VPN + draw(st.sampled_from([0, 0, 3, 500, 511]))
    out = []
    for _ in range(n):
        fi = draw(st.integers(0, len(files) - 1))
        npages = files[fi].npages
        pgoff = draw(
            st.one_of(
                st.just(0),
                st.just(0),
                st.integers(0, npages + 40),
                st.sampled_from([512, 1024]).filter(lambda x, n=npages: x < n),
            )
        )
        room = max(npages - pgoff, 1)
        pages = draw(
            st.one_of(
                st.just(room),
                st.integers(1, 64),
                st.integers(max(room - 20, 1), room + 40),
                st.integers(1, min(room + 600, 1600)),
            )
        )
        bits = draw(st.integers(0, 2**20 - 1))
        if bits & 1:  # 2 MiB aligned
            start = -(-cursor // PMD_PAGES) * PMD_PAGES
        else:
            start = cursor + (bits >> 11) % PMD_PAGES
        out.append(
            VmaSpec(
                start=start * 4096,
                pages=pages,
                file=fi,
                pgoff=pgoff,
                shared=bool(bits & 2),
                writable=bool(bits & 4),
                executable=(bits >> 3) % 4 == 0,
                advice=ADVICE[(bits >> 5) % len(ADVICE)],
                uffd=(bits >> 8) % 5 == 0,
            )
        )
        cursor = start + pages + (0, 0, 1, 7, 300, 700)[(bits >> 9) % 6]
    return out


@st.composite
def configs(draw, profile: str) -> Config:
    """Knobs: architecture, fault_around_bytes, prefault override, THP disabled."""
    return Config(
        profile=profile,
        arch=draw(st.sampled_from(sorted(ARCHES))),
        fault_around_bytes=draw(st.sampled_from(FAULT_AROUND_BYTES)),
        prefault=draw(st.sampled_from([None, None, "young", "old"])),
        thp_disabled=draw(st.sampled_from([False, False, True])),
    )


# --- traces ---------------------------------------------------------------------------------------

_WHAT = ("seq", "seq", "rand", "outside", "stride")

#: One piece of a trace phase: (what, VMA, start in permille of the VMA, length, knobs). The knobs
#: integer carries the store / instruction-fetch probabilities, the row count and a seed.
_piece = st.tuples(
    st.integers(0, 4), st.integers(0, 2), st.integers(0, 1000), st.integers(1, 64), st.integers(0, 2**24)
)


def _phase(pieces, vmas: list[VmaSpec], max_rows: int):
    vpn, kind, count = [], [], []
    for what_i, vi, permille, length, knobs in pieces:
        what = _WHAT[what_i]
        frac = permille / 1000
        p_store = (0.0, 0.0, 0.2, 0.6)[knobs & 3]
        p_exec = (0.0, 0.0, 0.1, 0.0)[(knobs >> 2) & 3]
        cnt = (1, 1, 1, 2, 3, 1, 1, 1)[(knobs >> 4) & 7]
        rng = np.random.default_rng(knobs >> 7)
        vm = vmas[vi % len(vmas)]
        base = vm.start_vpn
        if what == "seq":
            k0 = int(frac * vm.pages) - rng.integers(0, 3)
            pages = k0 + np.arange(length)
        elif what == "stride":
            k0 = int(frac * vm.pages)
            pages = k0 + np.arange(length) * int(rng.choice([2, 16, 17, 512, -1]))
        elif what == "rand":
            pages = rng.integers(-2, vm.pages + 2, size=length)
        else:  # outside every mapping (or just past one)
            pages = rng.choice([-1, -513, vm.pages, vm.pages + 1, 10**6], size=length)
        r = rng.random(len(pages))
        k = np.where(r < p_store, 1, np.where(r < p_store + p_exec, 2, 0))
        vpn.extend((base + pages).tolist())
        kind.extend(k.tolist())
        count.extend([cnt] * len(pages))
    vpn, kind, count = vpn[:max_rows], kind[:max_rows], count[:max_rows]
    return (np.array(vpn, dtype=np.int64), np.array(kind, dtype=np.uint8), np.array(count, dtype=np.int64))


@st.composite
def traces(draw, vmas: list[VmaSpec], max_rows: int = 300):
    """1-3 phases (``clear_refs`` runs between them) of at most ``max_rows`` rows in total."""
    nphases = draw(st.integers(1, 3))
    budget = max_rows
    phases = []
    for _ in range(nphases):
        pieces = draw(st.lists(_piece, min_size=1, max_size=5))
        ph = _phase(pieces, vmas, max(budget, 1))
        budget -= len(ph[0])
        phases.append(ph)
    return phases


@st.composite
def cases(draw, profile: str) -> Case:
    """A complete differential-test case for ``profile``."""
    nfiles = draw(st.integers(1, 3))
    drawn = [draw(file_specs()) for _ in range(nfiles)]
    files = [d[0] for d in drawn]
    vmas = draw(vma_layouts(files))
    return Case(
        files=files,
        vmas=vmas,
        config=draw(configs(profile)),
        phases=draw(traces(vmas)),
        shadows=[(i, p) for i, d in enumerate(drawn) for p in d[1]],
        referenced=[(i, h) for i, d in enumerate(drawn) for h in d[2]],
        not_uptodate=[(i, h) for i, d in enumerate(drawn) for h in d[3]],
    )


# --- running a case -------------------------------------------------------------------------------


def copy_state(s: SimState) -> SimState:
    """A deep copy of every array of ``s``."""
    return SimState(*(np.array(a, copy=True) for a in s))


def build_states(case: Case) -> tuple[Simulator, SimState, SimState]:
    """The simulator built for ``case`` (with its extra flags applied) and two copies of its state."""
    sim = Simulator(case.files, case.vmas, case.config)
    s = sim.state
    for fi, page in case.shadows:
        s.pc_flags[int(s.files[fi, 0]) + page] |= np.uint8(PG.SHADOW)
    for fi, head in case.referenced:
        s.pc_flags[int(s.files[fi, 0]) + head] |= np.uint8(PG.REFERENCED)
    for fi, head in case.not_uptodate:
        s.pc_flags[int(s.files[fi, 0]) + head] &= np.uint8(0xFF ^ PG.UPTODATE)
    return sim, copy_state(s), copy_state(s)


def replay_extra(sim: Simulator) -> tuple:
    """Fresh copies of the simulator's TLB and reclaim-aging state, the ``t, a`` arguments of
    ``replay_trace(s, t, a, vpn, kind, count)`` (both models are off in these tests)."""
    return tuple(type(obj)(*(np.array(x, copy=True) for x in obj)) for obj in (sim.tlb, sim.aging))


def _runs(a: np.ndarray) -> list[tuple[int, int]]:
    """Run-length encoding ``[(value, length), ...]``."""
    out: list[tuple[int, int]] = []
    for x in a.tolist():
        if out and out[-1][0] == x:
            out[-1] = (x, out[-1][1] + 1)
        else:
            out.append((x, 1))
    return out


def reproducer(case: Case) -> str:
    """Python source that rebuilds ``case`` (paste it into a test or the findings file)."""
    lines = [
        "import numpy as np",
        "from fastfault.model import Config, FileSpec, VmaSpec",
        "from tests.strategies import Case",
        "",
        "def rl(runs):",
        "    return np.concatenate([np.full(n, v) for v, n in runs]) if runs else np.zeros(0, np.int64)",
        "",
        "files = [",
    ]
    for fs in case.files:
        args = [f"i_size={fs.i_size}", f"folio_size=rl({_runs(fs.folio_size)})"]
        args += [f"ra_pages={fs.ra_pages}", f"max_folio_order={fs.max_folio_order}"]
        for attr in ("locked", "readahead", "workingset"):
            arr = getattr(fs, attr)
            if arr is not None and np.asarray(arr).any():
                args.append(f"{attr}=rl({_runs(np.asarray(arr, dtype=bool).astype(int))}).astype(bool)")
        lines.append(f"    FileSpec({', '.join(args)}),")
    lines.append("]")
    lines.append("vmas = [")
    for vm in case.vmas:
        lines.append(
            f"    VmaSpec(start={vm.start:#x}, pages={vm.pages}, file={vm.file}, pgoff={vm.pgoff}, "
            f"shared={vm.shared}, writable={vm.writable}, executable={vm.executable}, "
            f"advice={vm.advice!r}, uffd={vm.uffd}),"
        )
    lines.append("]")
    c = case.config
    lines.append(
        f"config = Config(profile={c.profile!r}, arch={c.arch!r}, fault_around_bytes={c.fault_around_bytes}, "
        f"prefault={c.prefault!r}, thp_disabled={c.thp_disabled})"
    )
    lines.append("phases = [")
    for vpn, kind, count in case.phases:
        lines.append(f"    (np.array([{', '.join(hex(x) for x in vpn.tolist())}], dtype=np.int64),")
        lines.append(f"     np.array({kind.tolist()}, dtype=np.uint8), np.array({count.tolist()})),")
    lines.append("]")
    lines.append(
        f"case = Case(files, vmas, config, phases, shadows={case.shadows!r}, "
        f"referenced={case.referenced!r}, not_uptodate={case.not_uptodate!r})"
    )
    return "\n".join(lines)

"""The TLB model: analytic cases, presets and validation, and the plain-Python mirror."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kernels_py.tlb as ref
from fastfault.errors import InputError
from fastfault.tlb import (
    TLB_PRESETS,
    PageKind,
    PwcSpec,
    TlbArray,
    TlbSpec,
    TlbStat,
    build_tlb,
    load_tlb_toml,
    run_tlb,
    tlb_access,
    tlb_fill,
    tlb_flush_all,
    tlb_flush_page,
    tlb_flush_range,
    tlb_lookup,
    tlb_preset,
    tlb_stats,
    tlb_walk,
)

K4, K2M, K64, K16 = PageKind.PTE_4K, PageKind.PMD_2M, PageKind.CONT_64K, PageKind.COALESCED_16K


def one_level(entries, ways, sizes=("4K",), replacement="lru", pwc=None, **levels) -> TlbSpec:
    return TlbSpec(name="t", l1d=(TlbArray(entries, ways, tuple(sizes), replacement),), pwc=pwc or PwcSpec(), **levels)


def cyclic(pages, rounds):
    return np.tile(np.asarray(pages, dtype=np.int64), rounds)


# ---------------------------------------------------------------------------------------------
# Analytic cases
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 7, 31, 32, 33, 64])
def test_cyclic_walk_fully_associative_lru(k):
    e = 32
    t = build_tlb(one_level(e, e))
    r = run_tlb(t, cyclic(np.arange(k) * 3 + 1000, 5))
    assert (r[:k] == 2).all()  # cold
    if k <= e:
        assert (r[k:] == 0).all()
    else:
        assert (r[k:] == 2).all()  # LRU thrashes on a cycle one longer than the TLB


def test_sequential_scan_through_2m_mappings_one_miss_per_2m():
    spec = one_level(64, 4, pwc=PwcSpec(pdpte=TlbArray(8, 8, ())))
    spec = TlbSpec(name="t", l1d=spec.l1d + (TlbArray(32, 4, ("2M",)),), pwc=spec.pwc)
    t = build_tlb(spec)
    n_pmd = 8
    vpn = (0x7F0000000000 >> 12) + np.arange(n_pmd * 512)
    r = run_tlb(t, vpn, np.full(vpn.size, K2M))
    assert (r == 2).sum() == n_pmd
    assert np.flatnonzero(r == 2).tolist() == [512 * i for i in range(n_pmd)]
    s = tlb_stats(t)
    # Cold walk: PML4, PDPT, PD = 3 references; then the PDPTE cache leaves the PDE only.
    assert s["walk_refs"] == 3 + (n_pmd - 1)
    assert s["pwc_hits_pdpte"] == n_pmd - 1
    assert s["fills_2m"] == n_pmd


def test_sequential_4k_scan_walk_references_by_level():
    t = build_tlb(one_level(64, 4, pwc=PwcSpec(TlbArray(4, 4, ()), TlbArray(8, 8, ()), TlbArray(32, 4, ()))))
    n_pmd = 8
    vpn = (0x7F0000000000 >> 12) + np.arange(n_pmd * 512)
    r = run_tlb(t, vpn)
    assert (r == 2).all()
    s = tlb_stats(t)
    # First page: 4 refs; the rest of its 2 MiB: PDE-cache hits (1 ref); each new 2 MiB: PDPTE hit (2 refs).
    assert s["walk_refs"] == 4 + 511 + (n_pmd - 1) * (2 + 511)
    assert s["walk_refs_pt"] == n_pmd * 512
    assert s["walk_refs_pd"] == n_pmd
    assert s["walk_refs_pdpt"] == 1
    assert s["walk_refs_pml4"] == 1
    assert s["pwc_hits_pde"] == n_pmd * 511
    assert s["pwc_hits_pdpte"] == n_pmd - 1
    assert s["pwc_misses"] == 1


def test_walk_references_pwc_levels():
    t = build_tlb(one_level(4, 4, pwc=PwcSpec(TlbArray(4, 4, ()), TlbArray(8, 8, ()), TlbArray(32, 4, ()))))
    base = 1 << 30
    assert tlb_walk(t, base, K4) == 4
    assert tlb_walk(t, base + 1, K4) == 1  # same page table: PDE cached
    assert tlb_walk(t, base + 512, K4) == 2  # same page directory: PDPTE cached
    assert tlb_walk(t, base + (1 << 18), K4) == 3  # same PDPT: PML4E cached
    assert tlb_walk(t, base + (1 << 27), K4) == 4  # new PML4 entry
    assert tlb_walk(t, base + 1024, K2M) == 1  # leaf PDE; PDPTE cached
    assert tlb_walk(t, (5 << 27) + 7, K2M) == 3
    assert tlb_walk(t, (20 << 27), PageKind.PUD_1G) == 2
    assert tlb_walk(t, (20 << 27) + (1 << 18), PageKind.PUD_1G) == 1
    none = build_tlb(one_level(4, 4))
    assert [tlb_walk(none, v, K4) for v in (0, 1, 512)] == [4, 4, 4]
    assert tlb_walk(none, 0, K2M) == 3


def test_plru_and_lru_differ_on_a_known_sequence():
    a, b, c, d, e = 10, 20, 30, 40, 50
    seq = [a, b, c, d, a, e]
    lru = build_tlb(one_level(4, 4, replacement="lru"))
    plru = build_tlb(one_level(4, 4, replacement="plru"))
    run_tlb(lru, seq)
    run_tlb(plru, seq)
    # LRU evicts B (least recently used); tree PLRU points at the right half after A and evicts C.
    assert tlb_lookup(lru, b, K4, False, False) == 2
    assert tlb_lookup(lru, c, K4, False, False) == 0
    assert tlb_lookup(plru, c, K4, False, False) == 2
    assert tlb_lookup(plru, b, K4, False, False) == 0


def test_plru_with_three_ways_never_picks_a_padding_leaf():
    t = build_tlb(one_level(3, 3, replacement="plru"))
    run_tlb(t, [1, 2, 3, 4])  # D replaces A (the tree points left twice)
    assert [tlb_lookup(t, v, K4, False, False) for v in (2, 3, 4)] == [0, 0, 0]
    run_tlb(t, np.arange(100, 200))
    assert (t.tags >= 0).all()


def test_set_indexing_with_128_sets():
    t = build_tlb(one_level(1536, 12))  # Skylake-STLB geometry as a single level
    assert t.geom[0, 2] == 128
    same_set = np.arange(13) * 128 + 5
    r = run_tlb(t, cyclic(same_set, 4))
    assert (r == 2).all()  # 13 pages in one 12-way set
    r = run_tlb(t, cyclic(same_set[:12] + 1, 4))
    assert (r[12:] == 0).all()  # 12 fit
    spread = np.arange(1536)
    t2 = build_tlb(one_level(1536, 12))
    r = run_tlb(t2, cyclic(spread, 2))
    assert (r[1536:] == 0).all()  # a full, evenly spread working set fits


def test_set_indexing_non_power_of_two():
    t = build_tlb(one_level(2040, 12))
    assert t.geom[0, 2] == 170
    r = run_tlb(t, cyclic(np.arange(13) * 170, 3))
    assert (r == 2).all()


def test_coalesced_16k_entries_zen4():
    t = build_tlb(tlb_preset("zen4"))
    group = 0x1000 + np.arange(4)
    assert run_tlb(t, group, np.full(4, K16)).tolist() == [2, 0, 0, 0]
    s = tlb_stats(t)
    assert s["fills_16k"] == 1 and s["coalesced_fills"] == 1
    # The L1 ITLB holds no 16K entries: a coalesced group fetched as code needs one 4K entry per page.
    r = run_tlb(t, group + 64, np.full(4, K16), ifetch=np.ones(4, bool))
    assert r.tolist() == [2, 2, 2, 2]
    # Without coalescing the same four pages are four misses.
    assert run_tlb(t, group + 128).tolist() == [2, 2, 2, 2]


def test_contpte_64k_entries():
    t = build_tlb(tlb_preset("neoverse-n1"))
    block = 0x2000 + np.arange(16)
    r = run_tlb(t, block, np.full(16, K64))
    assert r.tolist() == [2] + [0] * 15
    s = tlb_stats(t)
    assert s["fills_64k"] == 1 and s["coalesced_fills"] == 1
    # An x86 core has no 64K entries: contpte falls back to 4K.
    t = build_tlb(tlb_preset("skylake"))
    assert (run_tlb(t, block, np.full(16, K64)) == 2).all()


def test_smashed_1g_page_in_zen2_l2():
    t = build_tlb(tlb_preset("zen2"))
    kinds = t.route_size[2]
    assert kinds[PageKind.PUD_1G] == 3  # a 1G page is held as a 2M entry in the L2 DTLB
    assert t.route_size[0][PageKind.PUD_1G] == 4


def test_flush_semantics():
    spec = TlbSpec(
        name="t",
        l1d=(TlbArray(16, 16, ("4K", "64K", "2M")),),
        l2=(TlbArray(64, 4, ("4K", "64K", "2M")),),
        pwc=PwcSpec(TlbArray(4, 4, ()), TlbArray(8, 8, ()), TlbArray(32, 4, ())),
    )
    t = build_tlb(spec)
    run_tlb(t, [5, 16, 700, 2000], [K4, K64, K2M, K4])
    valid = lambda: int((t.tags[:80] >= 0).sum())  # noqa: E731 -- the 80 L1 + L2 entries
    assert valid() == 8
    tlb_flush_page(t, 20)  # inside the 64K block 16..31
    assert valid() == 6
    assert tlb_lookup(t, 16, K64, False, False) == 2
    assert tlb_lookup(t, 5, K4, False, False) == 0
    tlb_flush_page(t, 1000)  # inside the 2M page 512..1023
    assert tlb_lookup(t, 600, K2M, False, False) == 2
    tlb_flush_range(t, 0, 8)
    assert tlb_lookup(t, 5, K4, False, False) == 2
    assert tlb_lookup(t, 2000, K4, False, False) == 0
    # Walk caches: the range flush dropped the PDPTE/PML4E entries covering 0..7 but not the PDE of 2000.
    assert tlb_walk(t, 2001, K4) == 1
    tlb_flush_page(t, 2001)  # drops every walk-cache entry on 2001's path
    assert tlb_walk(t, 2002, K4) == 4
    assert tlb_walk(t, 2003, K4) == 1
    tlb_flush_all(t)
    assert (t.tags < 0).all()
    assert tlb_walk(t, 2001, K4) == 4
    s = tlb_stats(t)
    assert (s["flush_page"], s["flush_range"], s["flush_all"]) == (3, 1, 1)


def test_write_to_clean_entry_is_a_miss():
    t = build_tlb(one_level(8, 8))
    assert tlb_access(t, 7, K4, False, False, False) == 2
    assert tlb_access(t, 7, K4, True, False, False) == 2  # D clear: walk to set it
    assert tlb_access(t, 7, K4, True, False, False) == 0
    assert tlb_access(t, 7, K4, False, False, False) == 0
    s = tlb_stats(t)
    assert s["dirty_misses"] == 1 and s["walks"] == 2 and s["fills"] == 2
    assert int((t.tags >= 0).sum()) == 1  # refreshed in place, not duplicated
    t = build_tlb(one_level(8, 8))
    tlb_fill(t, 9, K4, True, False)  # a walk that saw a dirty, writable PTE
    assert tlb_lookup(t, 9, K4, True, False) == 0


def test_l2_hit_refills_l1():
    spec = TlbSpec(name="t", l1d=(TlbArray(4, 4, ("4K",)),), l2=(TlbArray(64, 4, ("4K",)),))
    t = build_tlb(spec)
    r = run_tlb(t, cyclic(np.arange(8), 3))
    assert r[:8].tolist() == [2] * 8
    assert (r[8:] == 1).all()  # L1 (4) thrashes, L2 (64) holds all 8
    s = tlb_stats(t)
    assert s["l2_hits"] == 16 and s["l1_evictions"] == 4 + 16


def test_instruction_side_fallbacks():
    t = build_tlb(one_level(8, 8))  # no L1I: fetches use the L1D
    assert run_tlb(t, [3, 3], ifetch=[True, False]).tolist() == [2, 0]
    assert tlb_stats(t)["ifetch_lookups"] == 1


def test_none_preset_is_a_no_op():
    t = build_tlb(tlb_preset("none"))
    assert not TLB_PRESETS["none"].enabled
    assert run_tlb(t, [1, 2, 3], write=[True, False, True]).tolist() == [0, 0, 0]
    assert tlb_walk(t, 1, K4) == 0
    tlb_flush_page(t, 1)
    tlb_flush_all(t)
    assert not t.stats.any()


# ---------------------------------------------------------------------------------------------
# Presets and validation
# ---------------------------------------------------------------------------------------------

EXPECTED_GEOMETRY = {  # (level, entries, ways) of each preset's arrays, from hardware-and-peers.md 2.1
    "skylake": [(0, 64, 4), (0, 32, 4), (0, 4, 4), (1, 128, 8), (1, 8, 8), (2, 1536, 12), (2, 16, 4)],
    "golden-cove": [(0, 96, 6), (0, 32, 4), (0, 8, 8), (1, 256, 8), (1, 32, 32), (2, 2048, 16)],
    "zen2": [(0, 64, 64), (1, 64, 64), (2, 2040, 12), (3, 512, 8)],
    "zen4": [(0, 72, 72), (1, 64, 64), (2, 3072, 24), (3, 512, 8)],
    "neoverse-n1": [(0, 48, 48), (1, 48, 48), (2, 1280, 5)],
    "neoverse-v2": [(0, 48, 48), (1, 48, 48), (2, 2048, 8)],
}


@pytest.mark.parametrize("name", sorted(EXPECTED_GEOMETRY))
def test_presets_geometry_and_sources(name):
    spec = tlb_preset(name)
    t = build_tlb(spec)
    rows = [(int(g[0]), int(g[2] * g[3]), int(g[3])) for g in t.geom if g[0] < 4]
    assert rows == EXPECTED_GEOMETRY[name]
    assert "hardware-and-peers.md" in spec.source
    r = run_tlb(t, np.arange(4096) % 40)  # 40 consecutive pages fit every preset's L1 DTLB
    assert (r[40:] == 0).all()


def test_toml_round_trip(tmp_path):
    p = tmp_path / "core.toml"
    p.write_text(
        """
[tlb]
name = "mycore"
[[tlb.l1d]]
entries = 64
ways = 4
sizes = ["4K"]
replacement = "plru"
[[tlb.l1d]]
entries = 32
ways = 4
sizes = ["2MiB"]
[[tlb.l2]]
entries = 1536
ways = 12
sizes = ["4k", "2M"]
[tlb.pwc]
pde = { entries = 32, ways = 4 }
"""
    )
    spec = load_tlb_toml(p)
    assert spec.name == "mycore"
    assert spec.l1d[0].replacement == "plru" and spec.l1d[1].sizes == ("2M",)
    assert spec.l2[0].sets == 128 and spec.l2[0].sizes == ("4K", "2M")
    assert spec.pwc.pde.entries == 32 and spec.pwc.pml4e is None
    assert load_tlb_toml({"tlb": {"preset": "zen4"}}) is TLB_PRESETS["zen4"]
    assert not load_tlb_toml({"preset": "none"}).enabled


BAD = [
    ({"l1d": [{"entries": 64, "ways": 0}]}, "tlb.l1d[0].ways"),
    ({"l1d": [{"entries": 4, "ways": 8}]}, "tlb.l1d[0].ways"),
    ({"l1d": [{"entries": 64, "ways": 4}], "l2": [{"entries": 2048, "ways": 12}]}, "tlb.l2[0].entries"),
    ({"l1d": [{"entries": 64, "ways": 4, "sizes": ["4K", "8K"]}]}, "tlb.l1d[0].sizes[1]"),
    ({"l1d": [{"entries": 64, "ways": 4, "replacement": "fifo"}]}, "tlb.l1d[0].replacement"),
    ({"l1d": [{"entries": 64, "ways": 4, "sizes": ["2M"]}]}, "tlb.l1d"),
    ({"l1d": [{"entries": 64, "ways": 4}, {"entries": 8, "ways": 8, "sizes": ["4K"]}]}, "tlb.l1d[1].sizes"),
    ({"l1d": [{"entries": 64, "ways": 4, "colour": "red"}]}, "tlb.l1d[0].colour"),
    ({"l1d": [{"entries": "64", "ways": 4}]}, "tlb.l1d[0].entries"),
    ({"l1d": [{"entries": 64, "ways": 4}], "pwc": {"pde": {"entries": 32, "ways": 5}}}, "tlb.pwc.pde.entries"),
    ({"l1i": [{"entries": 64, "ways": 4}]}, "tlb.l1d"),
    ({"preset": "pentium"}, "tlb"),
    ({"l3": []}, "tlb.l3"),
]


@pytest.mark.parametrize(("table", "field"), BAD)
def test_impossible_hierarchies_are_refused_in_one_line(table, field):
    with pytest.raises(InputError) as err:
        load_tlb_toml({"tlb": table})
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(field + ":") or msg.startswith(field + "."), msg


def test_toml_file_errors_name_the_file(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[[tlb.l1d]]\nentries = 64\nways = 0\n")
    with pytest.raises(InputError, match=r"bad.toml: tlb.l1d\[0\].ways"):
        load_tlb_toml(p)
    p.write_text("[tlb\n")
    with pytest.raises(InputError, match="not valid TOML"):
        load_tlb_toml(p)


def test_direct_construction_is_validated():
    with pytest.raises(InputError, match=r"^tlb.l2\[0\].ways: 0 ways"):
        TlbSpec(name="x", l1d=(TlbArray(8, 8),), l2=(TlbArray(8, 0),))
    with pytest.raises(InputError):
        build_tlb("skylake")


# ---------------------------------------------------------------------------------------------
# The mirror
# ---------------------------------------------------------------------------------------------

SIZES = ["4K", "16K", "64K", "2M", "1G"]


@st.composite
def arrays_for_level(draw, required: bool):
    if not required and draw(st.booleans()):
        return ()
    sizes = ["4K"] + [s for s in SIZES[1:] if draw(st.booleans())]
    n = draw(st.integers(1, min(3, len(sizes))))
    owner = [0] + [draw(st.integers(0, n - 1)) for _ in sizes[1:]]
    if len(set(owner)) < n:
        n = len(set(owner))
        remap = {o: i for i, o in enumerate(sorted(set(owner)))}
        owner = [remap[o] for o in owner]
    out = []
    for i in range(n):
        ways = draw(st.one_of(st.integers(1, 6), st.integers(16, 20)))  # 16+ ways: the tag-index path
        sets = draw(st.sampled_from([1, 1, 2, 3, 5, 8]))
        held = tuple(s for s, o in zip(sizes, owner, strict=True) if o == i)
        out.append(TlbArray(sets * ways, ways, held, draw(st.sampled_from(["lru", "plru"]))))
    return tuple(out)


@st.composite
def specs(draw):
    pwc = [
        TlbArray(w * draw(st.integers(1, 3)), w, (), draw(st.sampled_from(["lru", "plru"])))
        if draw(st.booleans())
        else None
        for w in (draw(st.integers(1, 4)) for _ in range(3))
    ]
    return TlbSpec(
        name="h",
        l1d=draw(arrays_for_level(True)),
        l1i=draw(arrays_for_level(False)),
        l2=draw(arrays_for_level(False)),
        l2i=draw(arrays_for_level(False)),
        pwc=PwcSpec(*pwc),
    )


def _apply(mod, t, ops):
    out = []
    for op, vpn, kind, write, ifetch, extra in ops:
        if op == 0:
            out.append(mod.tlb_access(t, vpn, kind, write, ifetch, extra == 1))
        elif op == 1:
            out.append(mod.tlb_lookup(t, vpn, kind, write, ifetch))
        elif op == 2:
            out.append(mod.tlb_walk(t, vpn, kind))
        elif op == 3:
            mod.tlb_fill(t, vpn, kind, write, ifetch)
        elif op == 4:
            mod.tlb_flush_page(t, vpn)
        elif op == 5:
            mod.tlb_flush_range(t, vpn, extra)
        elif op == 6:
            mod.tlb_flush_all(t)
        else:
            mod.tlb_add_hits(t, extra, write, ifetch)
    return out


def _check_accelerators(t) -> None:
    """The structures that make the jitted model O(1) say exactly what ``tags``/``stamp`` say: each
    array's tag index holds its valid entries, each reachable from its home slot before an empty
    one; ``ninvalid`` counts the invalid ways of each set; each LRU set's list is its valid entries
    by decreasing stamp, and an invalid entry links to itself."""
    from fastfault.tlb.model import _home
    from fastfault.tlb.presets import ArrayField as F

    n = t.tags.shape[0]
    for row in t.geom:
        base, sets, ways = int(row[F.ENTRY_BASE]), int(row[F.SETS]), int(row[F.WAYS])
        hb, hm = int(row[F.HASH_BASE]), int(row[F.HASH_MASK])
        slots = t.index[hb : hb + hm + 1].tolist() if hm >= 0 else []
        valid = {i for i in range(base, base + sets * ways) if t.tags[i] >= 0}
        assert (hm < 0) == (ways < 16)
        assert hm < 0 or ({i for i in slots if i >= 0} == valid and sum(i >= 0 for i in slots) == len(valid))
        for i in valid if hm >= 0 else ():
            h = int(_home(int(t.tags[i]), hm))
            while slots[h] != i:
                assert slots[h] >= 0, "an entry sits past an empty slot of its probe sequence"
                h = (h + 1) & hm
        for s_ in range(sets):
            ways_idx = range(base + s_ * ways, base + (s_ + 1) * ways)
            gset = int(row[F.SET_BASE]) + s_
            assert t.ninvalid[gset] == sum(int(t.tags[i]) < 0 for i in ways_idx)
            assert all(int(t.eset[i]) == gset for i in ways_idx)
            for i in ways_idx:
                if t.tags[i] < 0:
                    assert t.lru_prev[i] == i and t.lru_next[i] == i
            if row[F.POLICY] != 0 or hm < 0:  # recency lists: LRU arrays with a tag index only
                assert all(t.lru_prev[i] == i and t.lru_next[i] == i for i in ways_idx)
                continue
            order, node = [], int(t.lru_next[n + gset])
            while node != n + gset:
                assert int(t.lru_next[t.lru_prev[node]]) == node
                order.append(node)
                node = int(t.lru_next[node])
            live = [i for i in ways_idx if t.tags[i] >= 0]
            assert order == sorted(live, key=lambda i: -int(t.stamp[i]))


@settings(max_examples=60, deadline=None)
@given(spec=specs(), seed=st.integers(0, 2**32 - 1), n=st.integers(1, 400))
def test_mirror_matches_jitted_model(spec, seed, n):
    rng = np.random.default_rng(seed)
    span = int(rng.choice([40, 600, 1 << 20]))
    op = rng.choice(8, size=n, p=[0.55, 0.12, 0.08, 0.08, 0.07, 0.05, 0.02, 0.03])
    vpn = rng.integers(0, span, n) + int(rng.integers(0, 4)) * (1 << 27)
    kind = rng.integers(0, 5, n)
    write = rng.random(n) < 0.3
    ifetch = rng.random(n) < 0.2
    extra = rng.integers(0, 40, n)
    ops = [
        (int(o), int(v), int(k), bool(w), bool(i), int(e))
        for o, v, k, w, i, e in zip(op, vpn, kind, write, ifetch, extra, strict=True)
    ]
    t = build_tlb(spec)
    r = ref.build_tlb(spec)
    assert _apply(__import__("fastfault.tlb.model", fromlist=["x"]), t, ops) == _apply(ref, r, ops)
    assert t.stats.tolist() == r.stat_vector()
    assert t.tags.tolist() == r.tags()
    assert t.flags.tolist() == r.flags()
    _check_accelerators(t)


@pytest.mark.parametrize("name", sorted(TLB_PRESETS))
def test_mirror_matches_on_presets(name):
    spec = TLB_PRESETS[name]
    rng = np.random.default_rng(7)
    n = 5000
    vpn = np.concatenate([rng.integers(0, 6000, n // 2), np.arange(n // 2) + (1 << 20)])
    kind = rng.integers(0, 5, n)
    write = rng.random(n) < 0.25
    ifetch = rng.random(n) < 0.2
    t = build_tlb(spec)
    r = ref.build_tlb(spec)
    assert run_tlb(t, vpn, kind, write, ifetch).tolist() == ref.run_tlb(r, vpn, kind, write, ifetch)
    assert t.stats.tolist() == r.stat_vector()
    assert t.tags.tolist() == r.tags()
    assert len(TlbStat) - 1 == len(r.stat_vector())
    _check_accelerators(t)


# ---------------------------------------------------------------------------------------------
# The page kind seen from the simulator's page tables
# ---------------------------------------------------------------------------------------------


def _kinds(mod, sim, coalesce):
    from fastfault.fault.state import PTE as PTEBITS

    s = sim.state
    out = []
    for k in range(sim.vmas[0].pages):
        vpn = sim.vmas[0].start_vpn + k
        present = (s.pte[k] & PTEBITS.PRESENT) or (s.pmd[s.vmas[0, 6] + (vpn >> 9) - (s.vmas[0, 0] >> 9)] & 3) == 2
        out.append(int(mod.mapping_kind(s, 0, vpn, coalesce)) if present else -1)
    return out


@pytest.mark.parametrize("folio", [1, 2, 4, 16, 512])
def test_mapping_kind(folio):
    from fastfault.model import Config, FileSpec, Simulator, VmaSpec
    from fastfault.tlb import COALESCE_AMD, COALESCE_CONTPTE, COALESCE_NONE, mapping_kind  # noqa: F401

    start = 0x7F0000000000
    f = FileSpec.from_folio_sizes(np.full(1024, folio, dtype=np.int64))
    vmas = [VmaSpec(start=start, pages=1024, shared=False, writable=True)]
    sim = Simulator([f], vmas, Config(arch="x86_64"))
    sim.run_relative([0, 16, 600])
    sim.run_relative([2], writes=[True])  # a COW copy breaks its group
    kinds = _kinds(__import__("fastfault.tlb.model", fromlist=["x"]), sim, COALESCE_AMD)
    assert kinds == _kinds(ref, sim, COALESCE_AMD)
    if folio == 512:
        assert set(kinds[512:]) == {int(K2M)}
    elif folio >= 4:
        assert kinds[0:4] == [int(K4)] * 4 and kinds[4:8] == [int(K16)] * 4
    else:
        assert int(K16) not in kinds
    assert int(K16) not in _kinds(ref, sim, COALESCE_NONE)
    s = sim.state
    s.pte[16:32] |= np.uint8(64)  # PTE.CONT
    ck = _kinds(__import__("fastfault.tlb.model", fromlist=["x"]), sim, COALESCE_CONTPTE)
    assert ck == _kinds(ref, sim, COALESCE_CONTPTE)
    if folio != 512:
        assert ck[16:32] == [int(K64)] * 16 and ck[8] == int(K4)


def test_callable_from_jitted_code():
    """The replay loop calls the kernels from its own jitted code, with the TlbState as an argument."""
    from fastfault._jit import jit
    from fastfault.tlb.model import tlb_access as access
    from fastfault.tlb.model import tlb_flush_page as flush

    @jit(cache=False)
    def driver(t, vpns):
        refs = 0
        for v in vpns:
            if access(t, v, 0, False, False, False) == 2:
                refs += 1
            flush(t, v - 1)
        return refs

    t = build_tlb(tlb_preset("skylake"))
    assert driver(t, np.arange(100, dtype=np.int64)) == 100
    assert tlb_stats(t)["flush_page"] == 100

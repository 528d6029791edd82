"""The cycle cost model: presets, validation, and estimates from simulator and TLB counters."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fastfault.cost import COST_PRESETS, CostModel, cost_model, estimate
from fastfault.errors import InputError
from fastfault.model import Config, FileSpec, Simulator, VmaSpec
from fastfault.tlb import build_tlb, run_tlb, tlb_preset, tlb_stats

COMPONENTS = [
    "minor_fault",
    "major_fault",
    "af_fault",
    "pte_set",
    "pmd_install",
    "hw_young_set",
    "l1_tlb_hit",
    "l2_tlb_hit",
    "walk_pml4",
    "walk_pdpt",
    "walk_pd",
    "walk_pt",
    "pwc_hit",
]


@pytest.mark.parametrize("name", sorted(COST_PRESETS))
def test_presets_are_valid_and_cited(name):
    m = COST_PRESETS[name]
    assert m.name == name
    assert list(m.components) == COMPONENTS
    assert all(getattr(m, c) >= 0 for c in COMPONENTS)
    assert "hardware-and-peers.md" in m.source
    assert m.major_fault > m.minor_fault > m.pte_set > m.l2_tlb_hit >= m.l1_tlb_hit


def test_preset_numbers():
    x86 = COST_PRESETS["x86-64"]
    assert x86.hw_young_set == 600  # Nadav Amit
    assert math.isclose(x86.minor_fault, 2.28 * 3000)
    assert math.isclose(x86.major_fault, 128 * 3000)
    assert math.isclose(x86.pte_set, (17.5 - 2.28) * 3000 * 271 / 65536)
    assert x86.af_fault == x86.minor_fault
    assert COST_PRESETS["golden-cove"].l2_tlb_hit == 7 and COST_PRESETS["zen4"].l2_tlb_hit == 7
    assert COST_PRESETS["neoverse-v2"].l2_tlb_hit == 6 and COST_PRESETS["neoverse-n1"].l2_tlb_hit == 3
    assert COST_PRESETS["neoverse-v2"].hw_young_set == 0
    assert COST_PRESETS["x86-64-cold-walks"].walk_pt == 180


def test_estimate_arithmetic():
    m = cost_model("x86-64", minor_fault=1000, pte_set=10, l2_tlb_hit=7, walk_pt=20, walk_pd=30, pwc_hit=1)
    counters = {"minflt": 5, "fault_af": 2, "majflt": 1, "ptes_installed": 32, "old_to_young_hw": 3}
    tlb = {"l1_hits": 100, "l2_hits": 4, "walk_refs_pt": 6, "walk_refs_pd": 2, "pwc_hits_pde": 5}
    e = estimate(counters, tlb, m)
    assert e["minor_fault"] == 3 * 1000
    assert e["af_fault"] == 2 * m.af_fault
    assert e["major_fault"] == m.major_fault
    assert e["pte_set"] == 320
    assert e["hw_young_set"] == 1800
    assert e["l1_tlb_hit"] == 0
    assert e["l2_tlb_hit"] == 28
    assert e["walk_pt"] == 120 and e["walk_pd"] == 60 and e["pwc_hit"] == 5
    assert math.isclose(e["total"], sum(e[c] for c in COMPONENTS))
    assert math.isclose(e["total_ns"], e["total"] / m.ghz)
    assert e["model"] == "x86-64+custom"


def test_estimate_from_a_simulation():
    f = FileSpec.from_folio_sizes(np.ones(1024, dtype=np.int64))
    sim = Simulator([f], [VmaSpec(start=0x7F0000000000, pages=1024)], Config())
    vpn = (0x7F0000000000 >> 12) + np.arange(1024)
    sim.run(vpn)
    t = build_tlb(tlb_preset("zen4"))
    run_tlb(t, vpn)
    e = estimate(sim.counters(), tlb_stats(t), "zen4")
    m = COST_PRESETS["zen4"]
    assert math.isclose(e["minor_fault"], 64 * m.minor_fault)  # 1024 pages / 16 per fault-around
    assert math.isclose(e["pte_set"], 1024 * m.pte_set)
    assert e["walk_pt"] == 1024 * m.walk_pt
    without_tlb = estimate(sim.counters(), None, "zen4")
    assert without_tlb["walk_pt"] == 0 and without_tlb["total"] < e["total"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"minor_fault": -1}, "cost.minor_fault"),
        ({"walk_pt": float("nan")}, "cost.walk_pt"),
        ({"l2_tlb_hit": "7"}, "cost.l2_tlb_hit"),
        ({"ghz": 0}, "cost.ghz"),
        ({"tlb_miss": 3}, "cost.tlb_miss"),
    ],
)
def test_bad_costs_are_refused(kwargs, field):
    with pytest.raises(InputError) as err:
        cost_model("x86-64", **kwargs)
    assert str(err.value).startswith(field + ":") and "\n" not in str(err.value)


def test_bad_inputs_are_refused():
    with pytest.raises(InputError, match="unknown preset"):
        cost_model("pentium")
    with pytest.raises(InputError, match=r"counters.minflt"):
        estimate({"minflt": -3}, {}, "x86-64")
    with pytest.raises(InputError, match=r"counters.fault_af"):
        estimate({"minflt": 1, "fault_af": 2}, {}, "x86-64")
    with pytest.raises(InputError, match="tlb_stats"):
        estimate({}, [1, 2], "x86-64")
    with pytest.raises(InputError, match="cost.pte_set"):
        CostModel(**{**COST_PRESETS["zen4"].__dict__, "pte_set": -0.5})

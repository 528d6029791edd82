"""Standard figures from tidy tables, skipped with a note when columns are missing; canonical experiments."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fastfault.plotting import FIGURES, SkipFigure, format_bytes, save_figures
from fastfault.sweep import load_experiment, load_results, run_sweep

ROOT = Path(__file__).resolve().parents[1]


def synthetic(extensions: bool) -> pd.DataFrame:
    """A results table shaped like a sweep's, without running the simulator."""
    rows = []
    grid = itertools.product(
        ["zipf", "sequential"],
        [4096, 65536, 2 << 20],
        [0.0, 0.5, 1.0],
        [("x86_64", "young"), ("arm64", "old"), ("arm64-nohaf", "old")],
        ["linux-6.6", "linux-6.18"],
        [0, 1],
    )
    for point, (wl, fa, thp, (arch, pol), prof, rep) in enumerate(grid):
        faults = 1000.0 / (fa / 4096) * (1 - 0.9 * thp) + (50 if (arch, pol) == ("arm64-nohaf", "old") else 0)
        row = {
            "point": point // 2,
            "replicate": rep,
            "workload_label": wl,
            "param_workload": wl,
            "param_seed": rep,
            "param_profile": prof,
            "param_arch": arch,
            "param_prefault": pol,
            "param_fault_around_bytes": fa,
            "param_thp_ratio": thp,
            "param_wl_npages": 1024,
            "accesses": 100000,
            "faults": faults * 100,
            "faults_per_1k": faults + rep,
            "fault_af": 10 * (arch == "arm64-nohaf"),
            "prefaulted_ptes": fa // 4096 * 10,
            "prefault_used": fa // 8192 * 10,
            "pages_mapped": 1024.0,
            "pte_tables": 2,
            "pmd_mapped": int(thp * 2),
            "ptes_installed": 1000,
            "set_pte_batches": 300 if prof == "linux-6.6" else 200,
        }
        if extensions:
            row["tlb_misses_per_1k"] = 5.0 * (1 - thp)
            row["false_young_fraction"] = 0.3 if pol == "young" else 0.02
            row["cost_minor_fault"] = faults * 10
            row["cost_af_fault"] = row["fault_af"] * 5.0
            row["cost_total"] = row["cost_minor_fault"] + row["cost_af_fault"]
            row["cost_model"] = "zen4"
            false_young = 20 if pol == "young" else 0
            decisions = {"protected_used": 40, "reclaim_untouched": 30, "protected_untouched": false_young}
            for name, v in {**decisions, "reclaim_used": 10}.items():
                row[f"aging_{name}"] = float(v)
        rows.append(row)
    return pd.DataFrame(rows)


def test_format_bytes():
    assert [format_bytes(v) for v in (4096, 65536, 2 << 20, 1 << 30, 1536)] == [
        "4K",
        "64K",
        "2M",
        "1G",
        "1.5K",
    ]


def test_every_figure_from_a_full_table(tmp_path):
    df = synthetic(extensions=True)
    sub = df[(df["param_profile"] == "linux-6.18")]
    written, notes = save_figures(sub, tmp_path, formats=("png",))
    svg, _ = save_figures(sub, tmp_path, formats=("svg",), only=["faults_vs_fault_around"])
    written += svg
    names = {p.stem for p in written}
    expected = set(FIGURES) - {"kernel_profiles"}  # one profile in `sub`
    assert expected <= names, (names, notes)
    assert any("kernel_profiles: skipped" in n and "profile" in n for n in notes)
    for p in written:
        assert p.stat().st_size > 1000
        if p.suffix == ".png":
            with Image.open(p) as im:
                assert im.size[0] > 300 and im.size[1] > 200
        else:
            assert p.read_text().lstrip().startswith("<?xml")
    assert not list(tmp_path.glob(".*.tmp"))


def test_missing_extension_columns_skip_with_a_note(tmp_path):
    df = synthetic(extensions=False)
    only = ["tlb_misses", "false_young", "cost_breakdown", "reclaim_aging"]
    only += ["faults_vs_fault_around", "access_flag_faults", "heatmap_fault_around_thp"]
    written, notes = save_figures(df, tmp_path, formats=("png",), only=only)
    names = {p.stem for p in written}
    for name in ("tlb_misses", "false_young", "cost_breakdown", "reclaim_aging"):
        assert name not in names
        assert any(n.startswith(f"{name}: skipped") for n in notes), notes
    assert {"faults_vs_fault_around", "access_flag_faults", "heatmap_fault_around_thp"} <= names
    with pytest.raises(SkipFigure, match="tlb_misses_per_1k"):
        FIGURES["tlb_misses"](df)


def test_unswept_axes_skip(tmp_path):
    df = synthetic(extensions=True)
    one = df[(df["param_fault_around_bytes"] == 65536) & (df["param_thp_ratio"] == 0.0)]
    with pytest.raises(SkipFigure, match="fault_around_bytes was not swept"):
        FIGURES["faults_vs_fault_around"](one)
    with pytest.raises(SkipFigure, match="not swept"):
        FIGURES["heatmap_fault_around_thp"](one)
    assert FIGURES["kernel_profiles"](one) is not None


def test_cli_plot(tmp_path, cli):
    d = tmp_path / "sweep"
    d.mkdir()
    synthetic(extensions=False).to_parquet(d / "results.parquet")
    r = cli("plot", d, "--format", "png", "--only", "faults_vs_fault_around", "--only", "tlb_misses")
    assert r.returncode == 0, r.stderr
    assert (d / "figures" / "faults_vs_fault_around.png").is_file()
    assert "tlb_misses: skipped" in r.stderr
    r = cli("plot", tmp_path / "nowhere")
    assert r.returncode == 2 and "no such results file" in r.stderr


CANONICAL = {
    "fault_around": {"faults_vs_fault_around", "fault_around_tradeoff", "mapping_cost"},
    "prefault_policy": {
        "access_flag_faults",
        "faults_vs_fault_around",
        "false_young",
        "reclaim_aging",
        "cost_breakdown",
    },
    "large_folios": {"heatmap_fault_around_thp", "pmd_mappings", "faults_vs_fault_around", "tlb_misses"},
    "kernel_profiles": {"kernel_profiles"},
}


@pytest.mark.parametrize("name", sorted(CANONICAL))
def test_canonical_experiment_small(name, tmp_path):
    """Each canonical experiment runs at a small size and its figures open."""
    exp = load_experiment(ROOT / "experiments" / f"{name}.toml", scale=0.04)
    summary = run_sweep(exp, tmp_path / name, workers=1, progress=False)
    df = load_results(tmp_path / name)
    assert len(df) == summary.total == len(exp.points) * exp.replicates
    assert np.isfinite(df["faults_per_1k"]).all()
    only = sorted(CANONICAL[name])
    written, notes = save_figures(df, tmp_path / name / "figures", formats=("png",), only=only)
    assert CANONICAL[name] <= {p.stem for p in written}, notes
    for p in written:
        with Image.open(p) as im:
            im.verify()

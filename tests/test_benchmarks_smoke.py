"""A tiny run of ``benchmarks/run.py --smoke``: every code path of the benchmark suite, no timing assertions.

Only the structure of the printed table and of the JSON document is checked; the numbers of a smoke run mean
nothing (sizes are tiny and the machine may be busy).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "benchmarks" / "run.py"

SECTIONS = {"replay", "diag", "reference", "faults", "sweep", "memory", "startup"}
TARGET_NAMES = (
    "zipf replay within 5x of the streaming floor",
    "uniform replay >= 1/40 of the streaming rate",
    "jitted >= 300x faster than kernels_py",
    "2 workers >= 1.8x faster than 1",
    "<= 3 bytes of state per page",
    "fastfault --help < 0.5 s",
    "first run with a warm cache < 2 s",
)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "smoke.json"
    proc = subprocess.run(
        [sys.executable, str(RUN), "--smoke", "--no-cold-start", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())


def test_json_document(smoke):
    _, doc = smoke
    assert set(doc) >= {"machine", "sizes", "model", "rows", "targets", "raw", "section_seconds", "table"}
    m = doc["machine"]
    for key in ("cpu", "cores", "kernel", "numba", "numpy", "python", "date", "loadavg_start", "loadavg_end"):
        assert key in m, key
    assert doc["sizes"]["name"] == "smoke"
    assert isinstance(doc["model"]["label"], str) and doc["model"]["label"]
    assert set(doc["section_seconds"]) == SECTIONS


def test_rows(smoke):
    _, doc = smoke
    assert {r["section"] for r in doc["rows"]} == SECTIONS
    for r in doc["rows"]:
        assert set(r) == {"section", "metric", "value", "unit", "note"}
        assert r["value"] is None or isinstance(r["value"], int | float)


def test_targets(smoke):
    _, doc = smoke
    names = [t["name"] for t in doc["targets"]]
    for name in TARGET_NAMES:
        assert name in names, name
    assert any(n.startswith("simulated fault >= 100x cheaper") for n in names)
    for t in doc["targets"]:
        assert t["met"] in (True, False, None)
        if t["met"] is not None:
            assert t["value"] is not None and t["factor"] > 0 and t["op"] in ("<=", ">=")


def test_raw_measurements(smoke):
    _, doc = smoke
    raw = doc["raw"]
    for trace in ("zipf", "uniform"):
        fl = raw["replay"][trace]["floor"]
        assert fl["accesses_per_s"] > 0 and fl["gb_per_s"] > 0
        assert raw["replay"][trace]["model"]["accesses_per_s"] > 0
    assert set(raw["faults"]["simulated"]) == {"4096", "65536"}
    assert raw["memory"]["simstate_bytes_per_page"] > 0
    assert raw["sweep"]["speedup"] > 0
    assert raw["startup"]["cold_run_seconds"] is None  # --no-cold-start


def test_table_printed(smoke):
    out, doc = smoke
    assert doc["table"] in out
    assert "targets" in out and ("MET" in out or "MISSED" in out)

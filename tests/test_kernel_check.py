"""The live kernel is the oracle: every recorded case must be reproduced exactly."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from fastfault.kernel.cases import case_json_paths, load_case
from fastfault.kernel.check import check_case

from .conftest import CASE_DIRS

CASES = [p for d in CASE_DIRS for p in case_json_paths(d)]


def test_public_cases_present():
    assert any(d.name == "x86_64-6.18-a" for d in CASE_DIRS)
    assert len(CASES) >= 63


@pytest.mark.parametrize("path", CASES, ids=[f"{p.parent.name}/{p.stem}" for p in CASES])
def test_case_matches_kernel(path):
    result = check_case(load_case(path))
    assert result.match, "\n".join(result.diffs)
    # Every compared field really was compared: both phases, six fields each.
    assert len(result.fields) == 12


def test_check_cli_json_and_exit_codes(tmp_path, cli):
    src = CASE_DIRS[0]
    names = sorted(p.stem for p in case_json_paths(src))[:3]
    for n in names:
        shutil.copy(src / f"{n}.json", tmp_path / f"{n}.json")
        shutil.copy(src / f"{n}.npz", tmp_path / f"{n}.npz")
    out = cli("kernel", "check", tmp_path, "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["total"] == 3 and doc["matched"] == 3
    assert {c["name"] for c in doc["cases"]} == set(names)
    assert all(c["match"] and c["diffs"] == [] for c in doc["cases"])

    # Make one recorded number wrong: the check must name the case and the field, and exit 1.
    meta = json.loads((tmp_path / f"{names[0]}.json").read_text())
    meta["phase1"]["minflt"] += 7
    (tmp_path / f"{names[0]}.json").write_text(json.dumps(meta))
    out = cli("kernel", "check", tmp_path, "--json")
    assert out.returncode == 1
    doc = json.loads(out.stdout)
    bad = [c for c in doc["cases"] if not c["match"]]
    assert [c["name"] for c in bad] == [names[0]]
    assert any(d.startswith("phase1.minflt: kernel") for d in bad[0]["diffs"])
    text = cli("kernel", "check", tmp_path)
    assert text.returncode == 1 and "phase1.minflt" in text.stdout and "2/3 cases match" in text.stdout


def _one_case(tmp_path):
    src = CASE_DIRS[0]
    name = sorted(p.stem for p in case_json_paths(src))[0]
    shutil.copy(src / f"{name}.json", tmp_path / f"{name}.json")
    shutil.copy(src / f"{name}.npz", tmp_path / f"{name}.npz")
    return tmp_path / f"{name}.json", tmp_path / f"{name}.npz"


def test_check_missing_array_is_one_line_exit_2(tmp_path, cli):
    js, npz = _one_case(tmp_path)
    with np.load(npz) as z:
        arrays = {k: z[k] for k in z.files if k != "present2"}
    np.savez(npz, **arrays)
    before = sorted(p.name for p in tmp_path.iterdir())
    out = cli("kernel", "check", tmp_path)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "present2" in out.stderr
    assert "Traceback" not in out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_check_negative_page_count_exit_2(tmp_path, cli):
    js, _ = _one_case(tmp_path)
    meta = json.loads(js.read_text())
    meta["npages"] = -5
    js.write_text(json.dumps(meta))
    out = cli("kernel", "check", tmp_path)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "npages" in out.stderr


def test_run_rejects_impossible_fault_around(cli, tmp_path):
    out = cli("run", "--fault-around", "3MiB", "--json", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "fault_around_bytes" in out.stderr
    assert out.stdout == "" and list(tmp_path.iterdir()) == []

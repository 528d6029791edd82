"""Reading, validating and writing kernel cases (``fastfault.kernel.cases``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fastfault.errors import InputError
from fastfault.kernel.cases import JSON_KEYS, PHASE_KEYS, Case, load_case, load_cases, write_case

DATA = Path(__file__).parent / "data" / "kernel-cases"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "kernel-cases"  # beside the repository, if present


def _case_dirs() -> list[Path]:
    dirs = sorted(p for p in DATA.glob("*") if p.is_dir() and any(p.glob("*.json")))
    if not any(d.name == "x86_64-6.18-a" for d in dirs) and (SHARED / "x86_64-6.18-a").is_dir():
        dirs.append(SHARED / "x86_64-6.18-a")
    return dirs


CASE_DIRS = _case_dirs()
ALL_JSON = [p for d in CASE_DIRS for p in sorted(d.glob("*.json"))]


def _public_case() -> Path:
    for d in CASE_DIRS:
        if d.name == "x86_64-6.18-a":
            return d / "000_order0_seq_a.json"
    pytest.skip("no public case set (tests/data/kernel-cases/x86_64-6.18-a or ../shared/kernel-cases)")


def _copy_case(src: Path, dst_dir: Path) -> Path:
    shutil.copy(src, dst_dir / src.name)
    shutil.copy(src.with_suffix(".npz"), dst_dir / src.with_suffix(".npz").name)
    for p in (dst_dir / src.name, dst_dir / src.with_suffix(".npz").name):
        p.chmod(0o644)
    return dst_dir / src.name


def _arrays(npz: Path) -> dict[str, np.ndarray]:
    with np.load(npz) as z:
        return {k: z[k] for k in z.files}


def _one_line_error(excinfo: pytest.ExceptionInfo, *needles: str) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    for n in needles:
        assert n in msg, msg
    return msg


def test_case_sets_present():
    assert ALL_JSON, "no kernel cases found in tests/data/kernel-cases or ../shared/kernel-cases"


@pytest.mark.parametrize("json_path", ALL_JSON, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_load_every_case(json_path: Path):
    c = load_case(json_path)
    assert isinstance(c, Case)
    assert c.name == json_path.stem
    assert c.folio_size.shape == (c.npages,) and c.folio_size.dtype == np.int64
    assert c.present1.shape == (c.vma_pages,) and c.present1.dtype == np.bool_
    assert c.offset_pages + c.vma_pages <= c.npages
    for t in (c.trace1, c.trace2):
        assert t.dtype == np.int64 and (t >= 0).all() and (t < c.vma_pages).all()
    if c.has_writes:
        assert c.write1.shape == c.trace1.shape and c.write2.shape == c.trace2.shape
    assert not c.folio_size.flags.writeable
    for ph in c.phases():
        assert ph.majflt == 0
        assert ph.file_pmd_mapped <= ph.rss <= c.vma_pages
    assert list(c.phase1.to_json()) == list(PHASE_KEYS)


def test_load_cases_folder():
    for d in CASE_DIRS:
        cases = load_cases(d)
        assert [c.name for c in cases] == sorted(p.stem for p in d.glob("*.json"))


def test_missing_array_is_input_error(tmp_path: Path):
    j = _copy_case(_public_case(), tmp_path)
    npz = j.with_suffix(".npz")
    arrays = _arrays(npz)
    del arrays["present2"]
    np.savez(npz, **arrays)
    with pytest.raises(InputError) as ei:
        load_case(j)
    _one_line_error(ei, str(npz), "present2", "missing")


def test_negative_npages_is_input_error(tmp_path: Path):
    j = _copy_case(_public_case(), tmp_path)
    meta = json.loads(j.read_text())
    meta["npages"] = -8192
    j.write_text(json.dumps(meta))
    with pytest.raises(InputError) as ei:
        load_case(j)
    _one_line_error(ei, str(j), "npages", ">= 1")


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("folio_size", lambda a: a.astype(np.int32), "dtype"),
        ("trace1", lambda a: a.astype(np.float64), "dtype"),
        ("present1", lambda a: a[:-1], "shape"),
        ("folio_size", lambda a: np.where(np.arange(len(a)) == 5, 3, a), "power of two"),
        ("trace2", lambda a: a + 10**6, "[0, "),
        ("write1", lambda a: np.ones(3, bool), "write2"),
    ],
)
def test_bad_arrays_are_input_errors(tmp_path: Path, key, value, needle):
    j = _copy_case(_public_case(), tmp_path)
    npz = j.with_suffix(".npz")
    arrays = _arrays(npz)
    arrays[key] = value(arrays.get(key, np.zeros(0)))
    np.savez(npz, **arrays)
    with pytest.raises(InputError) as ei:
        load_case(j)
    _one_line_error(ei, str(npz), needle)


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("vma_pages", 10**6, "past the file"),
        ("vma_start", 4095, "multiple of 4096"),
        ("vma_aligned_2m", False, "vma_aligned_2m"),
        ("private", "no", "true or false"),
        ("phase1", {"minflt": 1}, "phase1.majflt"),
        ("layout", None, "layout"),
    ],
)
def test_bad_json_fields_are_input_errors(tmp_path: Path, key, value, needle):
    j = _copy_case(_public_case(), tmp_path)
    meta = json.loads(j.read_text())
    if value is None:
        del meta[key]
    else:
        meta[key] = value
    j.write_text(json.dumps(meta))
    with pytest.raises(InputError) as ei:
        load_case(j)
    _one_line_error(ei, str(j), needle)


def test_unreadable_files_are_input_errors(tmp_path: Path):
    with pytest.raises(InputError) as ei:
        load_case(tmp_path / "nope.json")
    _one_line_error(ei, "nope.json", "cannot read")
    j = _copy_case(_public_case(), tmp_path)
    j.write_text("{not json")
    with pytest.raises(InputError) as ei:
        load_case(j)
    _one_line_error(ei, "not valid JSON")
    j = _copy_case(_public_case(), tmp_path)
    j.with_suffix(".npz").unlink()
    with pytest.raises(InputError) as ei:
        load_case(j)
    _one_line_error(ei, ".npz", "missing file")


def test_write_case_round_trip(tmp_path: Path):
    src = _public_case()
    meta = json.loads(src.read_text())
    meta["kernel"] = "test"
    arrays = _arrays(src.with_suffix(".npz"))
    out = write_case(tmp_path / "set", "000_copy", meta, arrays)
    assert out == tmp_path / "set" / "000_copy.json"
    assert sorted(p.name for p in (tmp_path / "set").iterdir()) == ["000_copy.json", "000_copy.npz"]
    written = json.loads(out.read_text())
    assert list(written)[: len(JSON_KEYS)] == list(JSON_KEYS)
    assert written["kernel"] == "test"
    a, b = load_case(src), load_case(out)
    for k in ("folio_size", "trace1", "trace2", "present1", "present2"):
        assert np.array_equal(getattr(a, k), getattr(b, k))
    assert a.phase1 == b.phase1 and a.phase2 == b.phase2


def test_write_case_refuses_invalid_and_writes_nothing(tmp_path: Path):
    src = _public_case()
    meta = json.loads(src.read_text())
    arrays = _arrays(src.with_suffix(".npz"))
    bad = dict(meta, offset_pages=1)  # mapping [1, npages + 1) is past EOF
    with pytest.raises(InputError) as ei:
        write_case(tmp_path, "x", bad, arrays)
    _one_line_error(ei, "past the file")
    with pytest.raises(InputError):
        write_case(tmp_path, "x", meta, dict(arrays, extra=np.zeros(1)))
    with pytest.raises(InputError):
        write_case(tmp_path, "../x", meta, arrays)
    assert list(tmp_path.iterdir()) == []

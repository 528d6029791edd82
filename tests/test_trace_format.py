"""The trace container: validation, run-length collapsing, .fftrace round trips and atomic writes."""

from __future__ import annotations

import json
import struct
import zipfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastfault.codes import AccessKind
from fastfault.errors import InputError
from fastfault.trace.format import (
    Mapping,
    collapse_runs,
    expand_runs,
    file_pages,
    load_trace,
    make_trace,
    mapping_index,
    save_trace,
)


def naive_collapse(vpn, kind, count):
    out = []
    for v, k, c in zip(vpn, kind, count, strict=True):
        if out and out[-1][0] == v and out[-1][1] == k:
            out[-1][2] += int(c)
        else:
            out.append([int(v), int(k), int(c)])
    return out


LIB = Mapping(0x400000, 0x404000, 0x1000, "r-xp", "/usr/lib/libx.so", 5 * 4096)
HEAP = Mapping(0x500000, 0x502000, 0, "rw-p", "[heap]")


def small_trace(**meta):
    vpn = [0x400, 0x400, 0x401, 0x500, 0x403, 0x999]
    kind = [2, 2, 2, 1, 0, 0]
    return make_trace(vpn, kind, [1, 2, 1, 1, 1, 1], (HEAP, LIB), meta or {"command": ["x"]})


def test_mapping_properties():
    assert LIB.is_file and LIB.executable and not LIB.writable and not LIB.shared
    assert LIB.npages == 4 and LIB.pgoff == 1 and LIB.start_vpn == 0x400 and LIB.end_vpn == 0x404
    assert LIB.file_pages == 5
    assert not HEAP.is_file and HEAP.writable
    shared = Mapping(0, 4096, 0, "rw-s", "/dev/shm/x")
    assert shared.shared and shared.is_file
    assert not Mapping(0, 4096, 0, "r--p", "").is_file


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"start": 1, "end": 4096}, "not page aligned"),
        ({"start": 4096, "end": 4096}, "empty"),
        ({"start": 0, "end": 4096, "offset": 7}, "offset"),
        ({"start": 0, "end": 4096, "perms": "rwx"}, "permissions"),
        ({"start": 0, "end": 4096, "perms": "r-xq"}, "permissions"),
        ({"start": 0, "end": 4096, "file_size": -5}, "file_size"),
        ({"start": "0", "end": 4096}, "integer"),
    ],
)
def test_mapping_rejects_bad_fields(kwargs, reason):
    with pytest.raises(InputError, match=reason):
        Mapping(**kwargs)


def test_make_trace_dtypes_and_sorting():
    t = small_trace()
    assert t.vpn.dtype == np.int64 and t.kind.dtype == np.uint8 and t.count.dtype == np.uint32
    assert [m.start for m in t.mappings] == [LIB.start, HEAP.start]  # sorted by address
    assert t.n_rows == 6 and t.n_accesses == 7
    assert make_trace([1, 2], [0, 1]).count.tolist() == [1, 1]


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (([1, 2], [0]), "differ in length"),
        (([[1, 2]], [[0, 0]]), "1-D"),
        (([1.5], [0]), "integers"),
        (([-1], [0]), r"vpn outside"),
        (([1], [3]), "not an AccessKind"),
        (([1], [0], [0]), "count must be >= 1"),
        (([1], [0], [2**32]), "range of uint32"),
        (([1], [0], None, (LIB, Mapping(0x403000, 0x405000))), "overlap"),
        (([1], [0], None, ("x",)), "Mapping objects"),
    ],
)
def test_make_trace_validation(args, reason):
    with pytest.raises(InputError, match=reason):
        make_trace(*args)


def test_mapping_index_and_file_pages():
    t = small_trace()
    assert mapping_index(t).tolist() == [0, 0, 0, 1, 0, -1]
    fp = file_pages(t, 0)
    assert fp.pgoff.tolist() == [1, 1, 2, 4]  # vpn - start_vpn + pgoff
    assert fp.count.tolist() == [1, 2, 1, 1] and fp.kind.tolist() == [2, 2, 2, 0]
    assert fp.rows.tolist() == [0, 1, 2, 4]
    assert file_pages(t, 1).pgoff.tolist() == [0]  # anonymous: page index within the mapping
    with pytest.raises(InputError, match="out of range"):
        file_pages(t, 5)


@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 2), st.integers(1, 5)),
        max_size=60,
    )
)
def test_collapse_is_lossless(rows):
    vpn = np.array([r[0] for r in rows], dtype=np.int64)
    kind = np.array([r[1] for r in rows], dtype=np.uint8)
    count = np.array([r[2] for r in rows], dtype=np.uint32)
    t = make_trace(vpn, kind, count)
    c = collapse_runs(t)
    assert [list(r) for r in zip(c.vpn.tolist(), c.kind.tolist(), c.count.tolist(), strict=True)] == (
        naive_collapse(vpn, kind, count)
    )
    e1, e2 = expand_runs(t), expand_runs(c)
    np.testing.assert_array_equal(e1.vpn, e2.vpn)
    np.testing.assert_array_equal(e1.kind, e2.kind)
    assert (e2.count == 1).all() and c.n_accesses == t.n_accesses
    # collapsing is idempotent
    cc = collapse_runs(c)
    np.testing.assert_array_equal(cc.count, c.count)


def test_collapse_splits_runs_longer_than_uint32():
    big = 2**32 - 1
    t = make_trace([5, 5, 5, 6], [0, 0, 0, 0], [big, big, 3, 1])
    c = collapse_runs(t)
    assert c.vpn.tolist() == [5, 5, 5, 6]
    assert int(c.count.astype(np.int64).sum()) == 2 * big + 4
    assert c.count.tolist() == [big, big, 3, 1]
    t2 = make_trace([5, 5], [0, 0], [big, 2])
    assert collapse_runs(t2).count.tolist() == [big, 2]


@pytest.mark.parametrize("compress", [True, False])
def test_round_trip(tmp_path, compress):
    t = small_trace(command=["python3", "-c", "pass"], host="h", nested={"a": [1, 2]})
    path = save_trace(tmp_path / "t.fftrace", t, compress=compress)
    back = load_trace(path)
    for a, b in zip(t[:3], back[:3], strict=True):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype
    assert back.mappings == t.mappings and back.meta == t.meta
    assert not list(tmp_path.glob(".*"))  # no temp file left


def test_round_trip_wide_values(tmp_path):
    # deltas beyond int32 and counts beyond uint16 take the wide storage types
    vpn = np.array([0x7F0000000, 0x1, 0x7F0000001, 0x0], dtype=np.int64)
    count = np.array([70000, 1, 2**32 - 1, 3], dtype=np.uint32)
    t = make_trace(vpn, [0, 1, 2, 0], count)
    back = load_trace(save_trace(tmp_path / "w.fftrace", t))
    np.testing.assert_array_equal(back.vpn, vpn)
    np.testing.assert_array_equal(back.count, count)
    with np.load(tmp_path / "w.fftrace") as z:
        assert z["vpn_delta"].dtype == np.int64 and z["count"].dtype == np.uint32
    small = load_trace(save_trace(tmp_path / "s.fftrace", small_trace()))
    with np.load(tmp_path / "s.fftrace") as z:
        assert z["vpn_delta"].dtype == np.int32 and z["count"].dtype == np.uint8
    assert small.n_accesses == 7


def test_empty_trace_round_trip(tmp_path):
    t = make_trace([], [], [], (LIB,), {})
    back = load_trace(save_trace(tmp_path / "e.fftrace", t))
    assert back.n_rows == 0 and back.mappings == (LIB,)
    assert collapse_runs(t).n_rows == 0 and expand_runs(t).n_rows == 0


def _write_npz(path, **arrays):
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _header(**over):
    doc = {"format": "fftrace", "version": 1, "mappings": [], "meta": {}} | over
    return np.frombuffer(json.dumps(doc).encode(), dtype=np.uint8)


@pytest.mark.parametrize(
    ("maker", "reason"),
    [
        (lambda p: p.write_bytes(b""), "not a valid .fftrace"),
        (lambda p: p.write_bytes(b"I  04001290,3\n"), "not a valid .fftrace"),
        (lambda p: _write_npz(p, kind=np.zeros(1, np.uint8)), "missing arrays"),
        (
            lambda p: _write_npz(
                p,
                vpn_delta=np.zeros(2, np.int64),
                kind=np.zeros(2, np.uint8),
                count=np.ones(2, np.uint8),
                header=_header(version=99),
            ),
            "unsupported .fftrace version",
        ),
        (
            lambda p: _write_npz(
                p,
                vpn_delta=np.zeros(2, np.int64),
                kind=np.zeros(3, np.uint8),
                count=np.ones(2, np.uint8),
                header=_header(),
            ),
            "differ in length",
        ),
        (
            lambda p: _write_npz(
                p,
                vpn_delta=np.zeros(1, np.int64),
                kind=np.zeros(1, np.uint8),
                count=np.ones(1, np.uint8),
                header=np.frombuffer(b"{not json", dtype=np.uint8),
            ),
            "not a valid .fftrace",
        ),
        (
            lambda p: _write_npz(
                p,
                vpn_delta=np.zeros(1, np.int64),
                kind=np.zeros(1, np.uint8),
                count=np.ones(1, np.uint8),
                header=_header(mappings=[{"start": 1, "end": 2}]),
            ),
            "not page aligned",
        ),
    ],
)
def test_load_rejects_malformed_files(tmp_path, maker, reason):
    path = tmp_path / "bad.fftrace"
    maker(path)
    with pytest.raises(InputError, match=reason) as err:
        load_trace(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_load_rejects_truncated_file(tmp_path):
    good = save_trace(tmp_path / "good.fftrace", small_trace())
    data = good.read_bytes()
    for cut in (10, len(data) // 2, len(data) - 5):
        bad = tmp_path / f"cut{cut}.fftrace"
        bad.write_bytes(data[:cut])
        with pytest.raises(InputError, match=str(bad)):
            load_trace(bad)
    # a corrupted member (CRC error / zlib error)
    corrupt = bytearray(data)
    with zipfile.ZipFile(good) as z:
        info = z.getinfo("vpn_delta.npy")
    name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)
    corrupt[info.header_offset + 30 + name_len + extra_len + info.compress_size // 2] ^= 0xFF
    bad = tmp_path / "corrupt.fftrace"
    bad.write_bytes(bytes(corrupt))
    with pytest.raises(InputError, match=str(bad)):
        load_trace(bad)
    with pytest.raises(InputError, match="no such trace file"):
        load_trace(tmp_path / "missing.fftrace")


def test_save_is_atomic(tmp_path, monkeypatch):
    dest = tmp_path / "t.fftrace"
    with pytest.raises(InputError, match="JSON"):
        save_trace(dest, small_trace(bad=object()))
    assert not dest.exists() and not list(tmp_path.iterdir())

    def boom(*args, **kwargs):
        raise OSError("disk full")

    dest.write_bytes(b"old")
    monkeypatch.setattr(np, "savez_compressed", boom)
    with pytest.raises(OSError, match="disk full"):
        save_trace(dest, small_trace())
    assert dest.read_bytes() == b"old"  # the previous file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["t.fftrace"]
    with pytest.raises(InputError, match="does not exist"):
        save_trace(tmp_path / "nodir" / "t.fftrace", small_trace())


def test_access_kind_codes_are_used():
    t = small_trace()
    assert set(np.unique(t.kind)) <= {int(k) for k in AccessKind}

"""The lackey log parser (jitted byte scanner), maps parsing and ``fastfault trace import lackey``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastfault.trace.lackey as lackey
from fastfault.errors import InputError
from fastfault.trace.format import expand_runs, load_trace
from fastfault.trace.lackey import LackeyParser, import_lackey, parse_lackey, read_lackey
from fastfault.trace.maps import format_maps, parse_maps, parse_maps_text

_KINDS = {"I": [2], "L": [0], "S": [1], "M": [0, 1]}


def naive_parse(text: str):
    """Reference: one (vpn, kind) per touched page, M = LOAD pages then STORE pages."""
    vpn, kind = [], []
    for line in text.splitlines():
        if not line.strip() or line.startswith(("==", "--", "**")):
            continue
        k = line[:3].strip()
        addr, size = line[3:].strip().split(",")
        a, n = int(addr, 16), int(size)
        pages = range(a >> 12, ((a + max(n, 1) - 1) >> 12) + 1)
        for kk in _KINDS[k]:
            for p in pages:
                vpn.append(p)
                kind.append(kk)
    return np.array(vpn, dtype=np.int64), np.array(kind, dtype=np.uint8)


def lackey_line(kind: str, addr: int, size: int) -> str:
    return f"I  {addr:08x},{size}" if kind == "I" else f" {kind} {addr:08x},{size}"


HEADER = "==1234== Lackey, an example Valgrind tool\n==1234== Command: /bin/true\n==1234== \n"
LOG = (
    HEADER
    + "I  04001290,3\n"
    + "I  04001293,5\n"
    + " S 1ffefffd00,8\n"
    + " L 1ffefffd08,8\n"
    + " M 0421ad38,4\n"
    + "I  04001ffe,4\n"  # crosses into page 0x4002
    + " M 0421affe,4\n"  # modify crossing a page: LOAD both pages, then STORE both
    + "==1234== \n==1234== Exit code:       0\n"
)


def write(tmp_path, text: str | bytes, name: str = "lackey.log"):
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def rows(trace):
    return list(zip(trace.vpn.tolist(), trace.kind.tolist(), trace.count.tolist(), strict=True))


def test_small_log(tmp_path):
    t = read_lackey(write(tmp_path, LOG))
    assert rows(t) == [
        (0x4001, 2, 2),  # two fetches on one page collapse into one row
        (0x1FFEFFF, 1, 1),
        (0x1FFEFFF, 0, 1),
        (0x421A, 0, 1),
        (0x421A, 1, 1),
        (0x4001, 2, 1),
        (0x4002, 2, 1),
        (0x421A, 0, 1),
        (0x421B, 0, 1),
        (0x421A, 1, 1),
        (0x421B, 1, 1),
    ]
    assert t.meta["log_lines"] == 12 and t.meta["access_lines"] == 7 and t.meta["accesses"] == 12
    v, k = naive_parse(LOG)
    e = expand_runs(t)
    np.testing.assert_array_equal(e.vpn, v)
    np.testing.assert_array_equal(e.kind, k)


def test_tolerated_variants(tmp_path):
    # CRLF line ends, no final newline, upper-case hex, blank lines, extra spaces
    t = read_lackey(write(tmp_path, "I  0400ABCD,3\r\n\r\n\n L   0400AFFF,2"))
    assert rows(t) == [(0x400A, 2, 1), (0x400A, 0, 1), (0x400B, 0, 1)]


def test_max_accesses_is_exact(tmp_path):
    path = write(tmp_path, LOG)
    for n in range(1, 13):
        assert read_lackey(path, max_accesses=n).n_accesses == n
    t = read_lackey(path, max_accesses=5)
    assert t.meta["truncated_at_max_accesses"]
    with pytest.raises(InputError, match="max_accesses"):
        read_lackey(path, max_accesses=0)


def random_log(rng: np.random.Generator, n: int) -> str:
    lines = [HEADER.rstrip("\n")]
    base = [0x4000000, 0x1FFEFFF000, 0x4835000]
    for _ in range(n):
        r = rng.random()
        if r < 0.02:
            lines.append("==99== comment")
            continue
        kind = "ILSM"[int(rng.integers(0, 4))]
        addr = base[int(rng.integers(0, 3))] + int(rng.integers(0, 3 * 4096))
        size = int(rng.choice([1, 2, 4, 8, 16, 32, 64, 6000]))
        lines.append(lackey_line(kind, addr, size))
    return "\n".join(lines) + "\n"


def test_chunk_boundaries_and_small_blocks(tmp_path):
    text = random_log(np.random.default_rng(1), 6000)
    path = write(tmp_path, text)
    v, k = naive_parse(text)
    for chunk in (4096, 5000, 1 << 20):
        parser = LackeyParser(str(path), capacity=64)  # tiny output blocks: exercises flushing
        with open(path, "rb", buffering=0) as fh:
            lackey.parse_stream(fh, parser, chunk_bytes=chunk)
        out = parser.result()
        e = expand_runs(
            lackey.make_trace(out["vpn"], out["kind"], out["count"], (), {}),
        )
        np.testing.assert_array_equal(e.vpn, v)
        np.testing.assert_array_equal(e.kind, k)


@settings(max_examples=40)
@given(st.integers(0, 2**31), st.lists(st.integers(1, 400), min_size=1, max_size=8))
def test_streaming_matches_reference(seed, pieces):
    text = random_log(np.random.default_rng(seed), 200).encode()
    parser = LackeyParser("<t>", capacity=64)
    buf = np.zeros(len(text) + 16, dtype=np.uint8)
    tail, pos = 0, 0
    cuts = np.cumsum(pieces).tolist()
    for stop in [c for c in cuts if c < len(text)] + [len(text)]:
        chunk = text[pos:stop]
        pos = stop
        buf[tail : tail + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
        n = tail + len(chunk)
        used = parser.feed(buf, n)
        tail = n - used
        buf[:tail] = buf[used:n].copy()
    parser.feed(buf, tail, final=True)
    out = parser.result()
    v, k = naive_parse(text.decode())
    np.testing.assert_array_equal(np.repeat(out["vpn"], out["count"].astype(np.int64)), v)
    np.testing.assert_array_equal(np.repeat(out["kind"], out["count"].astype(np.int64)), k)


def test_pure_python_kernel_matches(tmp_path, monkeypatch):
    """The jitted scanner and its plain-Python body (NUMBA_DISABLE_JIT) agree."""
    text = random_log(np.random.default_rng(7), 400)
    path = write(tmp_path, text)
    jitted = rows(read_lackey(path))
    monkeypatch.setattr(lackey, "_scan", getattr(lackey._scan, "py_func", lackey._scan))
    assert rows(read_lackey(path)) == jitted
    with pytest.raises(InputError, match=r":3: truncated line"):
        read_lackey(write(tmp_path, "I  0400abcd,3\n L 04001000,4\n L 1ffefff\n", "bad.log"))


@pytest.mark.parametrize(
    ("body", "lineno", "reason", "text"),
    [
        (" L 1ffefff\n", 6, "truncated line", " L 1ffefff"),
        (" L 1ffefff", 6, "truncated line", " L 1ffefff"),  # truncated at end of file
        (" X 0421ad38,4\n", 6, "unknown access kind", " X 0421ad38,4"),
        ("Q  0421ad38,4\n", 6, "not a lackey trace line", "Q  0421ad38,4"),
        (" L 04zz1000,4\n", 6, "malformed hex address", " L 04zz1000,4"),
        (" L ,4\n", 6, "malformed hex address", " L ,4"),
        (" L 04001000,\n", 6, "malformed access size", " L 04001000,"),
        (" L 04001000,4x\n", 6, "malformed access size", " L 04001000,4x"),
        (" L 04001000,99999999999\n", 6, "access size above", " L 04001000,99999999999"),
        (" L 12345678901234567,4\n", 6, "address >= 2**63", " L 12345678901234567,4"),
        (" L\n", 6, "truncated line", " L"),
        ("hello world\n", 6, "not a lackey trace line", "hello world"),
    ],
)
def test_malformed_lines(tmp_path, body, lineno, reason, text):
    good = "I  04001290,3\n L 1ffefffd08,8\n"
    after = "I  04001290,3\n" if body.endswith("\n") else ""  # else: truncated at end of file
    path = write(tmp_path, HEADER + good + body + after)
    with pytest.raises(InputError) as err:
        parse_lackey(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}:{lineno}: ")
    assert reason in msg, msg
    assert repr(text) in msg and "\n" not in msg


def test_error_line_number_across_chunks(tmp_path):
    good = "".join(lackey_line("L", 0x4000000 + 8 * i, 8) + "\n" for i in range(3000))
    path = write(tmp_path, good + " L 0400zz00,8\n")
    parser = LackeyParser(str(path))
    with open(path, "rb", buffering=0) as fh, pytest.raises(InputError, match=r":3001: malformed hex"):
        lackey.parse_stream(fh, parser, chunk_bytes=4096)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", ":1: empty lackey log"),
        (HEADER, ":3: no access lines"),
        ("\n\n", ":2: no access lines"),
    ],
)
def test_empty_logs(tmp_path, text, reason):
    with pytest.raises(InputError, match=reason):
        parse_lackey(write(tmp_path, text))


def test_missing_log(tmp_path):
    with pytest.raises(InputError, match="no such lackey log"):
        parse_lackey(tmp_path / "nope.log")
    with pytest.raises(InputError, match="is a directory"):
        parse_lackey(tmp_path)


# ------------------------------------------------------------------------------------ maps

MAPS = """\
04000000-04001000 r--p 00000000 fe:00 338944                     /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
04001000-04027000 r-xp 00001000 fe:00 338944                     /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
04035000-04056000 rwxp 00000000 00:00 0
0421a000-0421c000 rw-p 00000000 00:00 0                          [heap]
1ffeffe000-1fff001000 rw-p 00000000 00:00 0
"""


def test_parse_maps():
    maps = parse_maps_text(MAPS)
    assert len(maps) == 5
    ld = maps[1]
    assert ld.path.endswith("ld-linux-x86-64.so.2") and ld.pgoff == 1 and ld.executable and ld.is_file
    assert maps[2].path == "" and not maps[2].is_file and maps[3].path == "[heap]"
    assert parse_maps_text(format_maps(maps)) == maps
    # smaps attribute lines and blank lines are skipped
    smaps = MAPS.splitlines()[0] + "\nSize:                  4 kB\nVmFlags: rd mr mw me\n\n"
    assert len(parse_maps_text(smaps)) == 1


def test_parse_maps_stat_files(tmp_path):
    f = tmp_path / "data.bin"
    f.write_bytes(b"x" * 5000)
    maps = parse_maps_text(
        f"10000-12000 r--s 00000000 fe:00 1 {f}\n20000-21000 r--p 0 0:0 0 /no/such\n", stat_files=True
    )
    assert maps[0].file_size == 5000 and maps[0].shared and maps[1].file_size == -1


@pytest.mark.parametrize(
    ("text", "lineno", "reason"),
    [
        ("04000000-04001000 r--p 00000000 fe:00 1 /x\nnot a maps line\n", 2, "not a maps line"),
        ("04000000 r--p 00000000 fe:00 1 /x\n", 1, "not a maps line"),
        ("04000000-04001000 r--p 00000000 fe:00\n", 1, "not a maps line"),
        ("04000000-04000800 r--p 00000000 fe:00 1 /x\n", 1, "not page aligned"),
        ("04000000-04001000 rq-p 00000000 fe:00 1 /x\n", 1, "permissions"),
        ("04000000-04001000 r--p 00000010 fe:00 1 /x\n", 1, "offset"),
        ("04001000-04000000 r--p 00000000 fe:00 1 /x\n", 1, "empty or reversed"),
        (
            "04000000-04002000 r--p 00000000 fe:00 1 /x\n04001000-04003000 r--p 00000000 fe:00 1 /y\n",
            2,
            "overlaps",
        ),
        ("\n\n", 1, "no mappings"),
    ],
)
def test_maps_errors(tmp_path, text, lineno, reason):
    path = write(tmp_path, text, "maps")
    with pytest.raises(InputError, match=reason) as err:
        parse_maps(path)
    assert str(err.value).startswith(f"{path}:{lineno}: ") and "\n" not in str(err.value)
    with pytest.raises(InputError, match="no such maps file"):
        parse_maps(tmp_path / "nope")


# --------------------------------------------------------------------------------- import


def test_import_lackey(tmp_path):
    log = write(tmp_path, LOG)
    maps = write(tmp_path, MAPS, "maps")
    out = tmp_path / "t.fftrace"
    t = import_lackey(log, maps, out)
    assert load_trace(out).mappings == t.mappings and t.meta["unmapped_accesses"] == 0
    assert t.meta["source_log"] == str(log) and len(t.mappings) == 5


def test_import_unmapped(tmp_path):
    log = write(tmp_path, LOG)
    maps = write(tmp_path, MAPS.replace("0421a000-0421c000", "0421a000-0421b000"), "maps")
    out = tmp_path / "t.fftrace"
    with pytest.raises(InputError) as err:
        import_lackey(log, maps, out)
    msg = str(err.value)
    # the first access outside every mapping is the page-crossing modify on line 10
    assert msg.startswith(f"{log}:10: page 0x421b000 is outside every mapping") and "--allow-unmapped" in msg
    assert "' M 0421affe,4'" in msg and not out.exists() and "\n" not in msg
    t = import_lackey(log, maps, out, allow_unmapped=True)
    assert t.meta["unmapped_accesses"] == 2 and out.exists()


def run_main(monkeypatch, capsys, *args):
    """Run the ``fastfault`` entry point in-process; return (exit code, stdout, stderr)."""
    from fastfault.cli import main

    monkeypatch.setattr("sys.argv", ["fastfault", *map(str, args)])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_cli_import_and_info(tmp_path, monkeypatch, capsys):
    log = write(tmp_path, LOG)
    maps = write(tmp_path, MAPS, "maps")
    out = tmp_path / "t.fftrace"
    code, stdout, stderr = run_main(monkeypatch, capsys, "trace", "import", "lackey", log, "--maps", maps, "--out", out)
    assert code == 0, stderr
    assert "12 accesses" in stdout
    code, stdout, stderr = run_main(monkeypatch, capsys, "trace", "info", out)
    assert code == 0, stderr
    assert "ld-linux-x86-64.so.2" in stdout and "distinct pages" in stdout
    bad = write(tmp_path, LOG.replace(" L 1ffefffd08,8", " L 1ffefffd08"), "bad.log")
    out2 = tmp_path / "bad.fftrace"
    code, stdout, stderr = run_main(
        monkeypatch, capsys, "trace", "import", "lackey", bad, "--maps", maps, "--out", out2
    )
    assert code == 2
    assert stderr == f"fastfault: error: {bad}:7: truncated line (no ',size' after the address): ' L 1ffefffd08'\n"
    assert not out2.exists() and not list(tmp_path.glob(".*"))


def test_cli_subprocess_error_exit(tmp_path, cli):
    res = cli(
        "trace",
        "import",
        "lackey",
        write(tmp_path, ""),
        "--maps",
        write(tmp_path, MAPS, "maps"),
        "--out",
        tmp_path / "x.fftrace",
    )
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "empty lackey log" in res.stderr

"""Benchmark: reading a ~10 million-line lackey log vs valgrind writing it.

The issue asks that "reading a 10 million-line lackey log runs at least as fast as valgrind writes
it". This script

1. calibrates a real program, ``sha256sum`` of the first K bytes of a real binary, so that
   ``valgrind --tool=lackey --trace-mem=yes`` prints about ``--lines`` lines (two short runs and a
   linear fit of lines against K: SHA-256 does the same work for every 64-byte block);
2. runs valgrind writing the log to a file in a temporary directory and measures its wall and
   CPU time (``wait4`` rusage), i.e. how fast valgrind writes lines;
3. optionally runs the same valgrind command with ``--log-file=/dev/null`` (valgrind's speed
   without any file I/O);
4. parses the log with :func:`fastfault.trace.lackey.parse_lackey`: the first call (JIT compile
   or cache load included) and the best of ``--repeat`` further calls;
5. optionally records the same command with :func:`fastfault.trace.record.record` (log streamed
   through a FIFO, never stored).

It prints lines/s for each and the parser/valgrind ratio, and writes them as JSON to ``--json``.
The machine may be shared: the load average before and after is recorded, and CPU times are
reported next to wall times.

Usage::

    python benchmarks/bench_lackey.py --json results/bench_lackey.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_valgrind(argv: list[str], log: str) -> dict:
    """Run valgrind lackey with ``--log-file=log``; return wall and CPU seconds."""
    cmd = ["valgrind", "--tool=lackey", "--trace-mem=yes", f"--log-file={log}", "--vgdb=no", *argv]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"valgrind failed ({proc.returncode}): {proc.stderr.read().decode()[-500:]}")
    proc.stderr.close()
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime}


def count_lines(path: str) -> int:
    n = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 24):
            n += chunk.count(b"\n")
    return n


def make_input(src: str, nbytes: int, dest: Path) -> Path:
    with open(src, "rb") as fh:
        dest.write_bytes(fh.read(nbytes))
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=10_000_000, help="target number of log lines")
    ap.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    ap.add_argument("--repeat", type=int, default=3, help="timed parser runs after the first")
    ap.add_argument("--source", default=os.path.realpath("/usr/bin/python3"), help="file whose bytes are hashed")
    ap.add_argument("--no-devnull", action="store_true", help="skip the --log-file=/dev/null run")
    ap.add_argument("--no-record", action="store_true", help="skip the streaming record run")
    ap.add_argument("--tmpdir", default=None, help="where the log is written (default: system temp dir)")
    args = ap.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed; install it with `apt-get install valgrind`")
    sha = shutil.which("sha256sum")
    if sha is None:
        raise SystemExit("sha256sum (coreutils) is not installed")

    from fastfault.trace.lackey import parse_lackey

    results: dict = {
        "host": platform.node(),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "valgrind": subprocess.run(["valgrind", "--version"], capture_output=True, text=True).stdout.strip(),
        "loadavg_before": os.getloadavg(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    with tempfile.TemporaryDirectory(prefix="bench-lackey-", dir=args.tmpdir) as tmp:
        tmpd = Path(tmp)
        log = str(tmpd / "lackey.log")
        # 1. calibrate K so that sha256sum <first K bytes> makes about --lines lines
        points = []
        for k in (16 << 10, 64 << 10):
            inp = make_input(args.source, k, tmpd / f"cal{k}")
            run_valgrind([sha, str(inp)], log)
            points.append((k, count_lines(log)))
        (k1, l1), (k2, l2) = points
        slope = (l2 - l1) / (k2 - k1)
        nbytes = max(1024, int(k1 + (args.lines - l1) / slope))
        inp = make_input(args.source, nbytes, tmpd / "input")
        program = [sha, str(inp)]
        results["program"] = f"sha256sum <first {nbytes} bytes of {args.source}>"
        results["calibration"] = points
        print(f"program: {results['program']}", flush=True)

        # 2. valgrind writing the log to a file
        write = run_valgrind(program, log)
        lines = count_lines(log)
        size = os.path.getsize(log)
        results["log_lines"] = lines
        results["log_bytes"] = size
        results["valgrind_write"] = write | {
            "lines_per_s_wall": lines / write["wall_s"],
            "lines_per_s_cpu": lines / write["cpu_s"],
        }
        print(
            f"valgrind writing {lines:,} lines ({size / 1e6:.0f} MB): {write['wall_s']:.1f} s wall "
            f"({lines / write['wall_s'] / 1e6:.2f} M lines/s), {write['cpu_s']:.1f} s CPU "
            f"({lines / write['cpu_s'] / 1e6:.2f} M lines/s)",
            flush=True,
        )

        # 3. valgrind without file I/O
        if not args.no_devnull:
            null = run_valgrind(program, "/dev/null")
            results["valgrind_devnull"] = null | {
                "lines_per_s_wall": lines / null["wall_s"],
                "lines_per_s_cpu": lines / null["cpu_s"],
            }
            print(
                f"valgrind to /dev/null: {null['wall_s']:.1f} s wall ({lines / null['wall_s'] / 1e6:.2f} M lines/s), "
                f"{null['cpu_s']:.1f} s CPU",
                flush=True,
            )

        # 4. the parser
        t0, c0 = time.perf_counter(), time.process_time()
        parser = parse_lackey(log)
        first = {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}
        assert parser.lines == lines, (parser.lines, lines)
        runs = []
        for _ in range(args.repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            parser = parse_lackey(log)
            out = parser.result()
            runs.append({"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0})
        best = min(runs, key=lambda r: r["wall_s"])
        results["parse_first_call"] = first
        results["parse"] = best | {
            "runs": runs,
            "lines_per_s_wall": lines / best["wall_s"],
            "lines_per_s_cpu": lines / best["cpu_s"],
            "rows": int(out["vpn"].shape[0]),
            "accesses": parser.accesses,
        }
        print(
            f"parser: {best['wall_s']:.2f} s wall ({lines / best['wall_s'] / 1e6:.1f} M lines/s, "
            f"{size / best['wall_s'] / 1e6:.0f} MB/s), {best['cpu_s']:.2f} s CPU "
            f"({lines / best['cpu_s'] / 1e6:.1f} M lines/s); first call {first['wall_s']:.2f} s; "
            f"{parser.accesses:,} accesses in {out['vpn'].shape[0]:,} rows",
            flush=True,
        )
        results["ratio_parse_over_valgrind_write_wall"] = write["wall_s"] / best["wall_s"]
        results["ratio_parse_over_valgrind_write_cpu"] = write["cpu_s"] / best["cpu_s"]
        os.unlink(log)

        # 5. streaming record of the same command
        if not args.no_record:
            from fastfault.trace.record import record

            t0 = time.perf_counter()
            trace = record(program)
            wall = time.perf_counter() - t0
            m = trace.meta
            results["record"] = {
                "wall_s": wall,
                "valgrind_wall_s": m["valgrind_seconds"],
                "valgrind_cpu_s": m["valgrind_cpu_seconds"],
                "log_lines": m["log_lines"],
                "lines_per_s_wall": m["log_lines"] / m["valgrind_seconds"],
                "rows": trace.n_rows,
                "mappings": len(trace.mappings),
                "files": sorted({mp.path for mp in trace.mappings if mp.is_file}),
            }
            print(
                f"record (FIFO, no log file): valgrind {m['valgrind_seconds']:.1f} s wall "
                f"({m['log_lines'] / m['valgrind_seconds'] / 1e6:.2f} M lines/s), {m['valgrind_cpu_seconds']:.1f} s "
                f"CPU; total with attribution and collapse {wall:.1f} s",
                flush=True,
            )
    results["loadavg_after"] = os.getloadavg()
    print(
        f"parser / valgrind-writing speed: {results['ratio_parse_over_valgrind_write_wall']:.1f}x (wall), "
        f"{results['ratio_parse_over_valgrind_write_cpu']:.1f}x (CPU); load average {results['loadavg_before'][0]:.1f}"
        f" -> {results['loadavg_after'][0]:.1f} on {os.cpu_count()} CPUs"
    )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp_json = args.json.with_name(f".{args.json.name}.tmp")
        tmp_json.write_text(json.dumps(results, indent=1) + "\n")
        os.replace(tmp_json, args.json)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    sys.exit(main())

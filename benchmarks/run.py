"""fastfault's benchmark suite: how close the kernels are to the machine's floors, in one run.

    python benchmarks/run.py [--quick] [--json PATH]

prints a table and writes JSON (default ``benchmarks/results/latest.json``). Sections:

``replay``      replay rate of the full model (fault path + TLB + accessed bits when the Simulator has a TLB
                model; else the fault path alone, labelled so) on a zipf and a uniform random trace over one
                hot file, next to the streaming floor of the same trace arrays (:mod:`floor`)
``reference``   the pure-Python reference (``kernels_py``) on a slice of the same traces: the speed-up
``faults``      simulated faults per second on a fault-heavy trace, and what the running kernel spends on the
                same faults (``real_faults.c``: mmap a cached order-0 file, touch a byte per page)
``sweep``       a small experiment on 1 and on 2 worker processes
``memory``      bytes of simulator state per 4 KiB page, the largest mapping that fits in 4 GiB, and a real
                simulator of a 1 TiB file mapping (built in a subprocess that reports its peak RSS)
``startup``     ``fastfault --help``, and the first ``fastfault run`` with a warm and with an empty numba cache
``diag``        diagnostics without a target that explain the misses (hit path on one page, gather floor)

Jitted code is timed best-of-N (N=3) after a warm-up call; wall time is reported, and the thread CPU time of
the same repetition is kept in the JSON (``cpu_seconds``) to show when other processes took the core.
``--quick`` shrinks every size (1 M accesses) for CI; ``--smoke`` is the tiny run of the test suite.
See ``benchmarks/README.md`` for what the numbers mean and why each missed target is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import inspect
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from floor import BYTES_PER_ACCESS, best_of, measure_floor  # noqa: E402

DEFAULT_JSON = HERE / "results" / "latest.json"
PAGE = 4096
BASE = 0x7F0000000000  # mapping start (2 MiB aligned)
BASE_VPN = BASE >> 12
STORE_FRACTION = 0.1
ZIPF_ALPHA = 1.0
TLB_PREFERENCE = ("zen4", "golden-cove", "skylake")  # this machine is an AMD EPYC (Zen 4, family 25 model 17)
GIB = 1 << 30


@dataclass(frozen=True)
class Sizes:
    """Every size of one run."""

    name: str
    accesses: int  # replay traces
    file_pages: int  # the hot file of the replay traces
    ref_accesses: int  # slice replayed by kernels_py
    fault_pages: int  # the fault-heavy file (simulated and real)
    split_pages: int  # real kernel, one VMA per page (vm.max_map_count bounds it)
    real_reps: int
    sweep_npages: int
    sweep_n: int
    sweep_points: int
    big_pages: int  # the huge mapping
    big_accesses: int
    diag_accesses: int
    reps: int = 3
    startup_reps: int = 5


FULL = Sizes("full", 10_000_000, 1 << 20, 20_000, 1 << 18, 32_768, 5, 65_536, 4_000_000, 8, 1 << 28, 200_000, 1_000_000)
QUICK = Sizes("quick", 1_000_000, 1 << 18, 5_000, 1 << 16, 8_192, 3, 16_384, 300_000, 8, 1 << 24, 50_000, 200_000)
SMOKE = Sizes(
    "smoke", 20_000, 4_096, 300, 2_048, 256, 1, 1_024, 2_000, 4, 1 << 16, 1_000, 2_000, reps=1, startup_reps=1
)

# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def _read(path: str, default: str = "") -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return default


def machine_info() -> dict:
    """CPU, cores, kernel, versions, date and load: what the numbers depend on."""
    import numba

    cpuinfo = _read("/proc/cpuinfo")
    fields = {}
    for line in cpuinfo.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            fields.setdefault(k.strip(), v.strip())
    meminfo = {}
    for line in _read("/proc/meminfo").splitlines():
        k, v = line.split(":", 1)
        meminfo[k] = int(v.split()[0]) * 1024
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    try:
        from importlib.metadata import version

        ff_version = version("fastfault")
    except Exception:  # noqa: BLE001 - metadata is optional
        ff_version = "?"
    thp = _read("/sys/kernel/mm/transparent_hugepage/enabled").strip()
    return {
        "cpu": fields.get("model name", platform.processor()),
        "cpu_family": fields.get("cpu family", ""),
        "cpu_model": fields.get("model", ""),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "mem_total_gib": round(meminfo.get("MemTotal", 0) / GIB, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "fastfault": ff_version,
        "git_commit": commit,
        "thp": thp,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "loadavg_start": list(os.getloadavg()),
    }


def _mem_available() -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def _fstype(path: Path) -> str:
    best = ("", "?")
    for line in _read("/proc/mounts").splitlines():
        parts = line.split()
        if len(parts) >= 3 and str(path).startswith(parts[1]) and len(parts[1]) > len(best[0]):
            best = (parts[1], parts[2])
    return best[1]


def full_model() -> tuple[dict, str]:
    """Keyword arguments of the full model and its label.

    The full model is the fault path + the TLB model + accessed bits. When ``Simulator`` has no ``tlb``
    parameter yet, the fault path (which keeps accessed bits) is measured alone and labelled so.
    """
    from fastfault.model import Simulator

    params = inspect.signature(Simulator.__init__).parameters
    if "tlb" not in params:
        return {}, "fault path only (TLB model not available)"
    try:
        from fastfault.tlb.presets import TLB_PRESETS

        names = [n for n in TLB_PREFERENCE if n in TLB_PRESETS] or [n for n in TLB_PRESETS if n != "none"]
    except ImportError:
        names = list(TLB_PREFERENCE)
    name = names[0]
    return {"tlb": name}, f"fault path + TLB ({name}) + accessed bits"


def make_simulator(npages: int, sim_kwargs: dict, *, fault_around: int = 65536, folio_size=None, cold=False):
    """One hot (or cold) file of ``npages`` pages in order-0 folios, one shared writable VMA over all of it."""
    from fastfault.model import Config, FileSpec, Simulator, VmaSpec

    if cold:
        f = FileSpec.uncached(npages * PAGE)
    else:
        fs = np.ones(npages, np.int64) if folio_size is None else folio_size
        f = FileSpec.from_folio_sizes(fs)
    vma = VmaSpec(start=BASE, pages=npages, shared=True, writable=True)
    cfg = Config(fault_around_bytes=fault_around)
    try:
        return Simulator([f], [vma], cfg, **sim_kwargs)
    except TypeError:
        if "tlb" in sim_kwargs and isinstance(sim_kwargs["tlb"], str):  # a Simulator wanting a TlbSpec
            from fastfault.tlb.presets import tlb_preset

            return Simulator([f], [vma], cfg, **{**sim_kwargs, "tlb": tlb_preset(sim_kwargs["tlb"])})
        raise


def make_traces(n: int, npages: int, seed: int = 2024) -> dict[str, np.ndarray]:
    """A zipf (alpha 1, ranks spread over the file by a random permutation) and a uniform random trace over
    ``npages`` pages, ``n`` accesses each, 10 % stores, every count 1. Fixed seed."""
    rng = np.random.default_rng(seed)
    weights = np.arange(1, npages + 1, dtype=np.float64) ** -ZIPF_ALPHA
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    ranks = np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), npages - 1)
    perm = rng.permutation(npages).astype(np.int64)
    zipf = perm[ranks] + BASE_VPN
    uniform = rng.integers(0, npages, size=n, dtype=np.int64) + BASE_VPN
    kind = (rng.random(n) < STORE_FRACTION).astype(np.uint8)
    count = np.ones(n, np.int64)
    return {"zipf": zipf, "uniform": uniform, "kind": kind, "count": count}


def _warm(sim_kwargs: dict, **sim_opts) -> None:
    """Compile (or load from numba's cache) the replay kernels: a few loads and stores on a small file."""
    vpn = np.arange(64, dtype=np.int64) + BASE_VPN
    kind = (np.arange(64) % 3 == 0).astype(np.uint8)
    make_simulator(512, sim_kwargs, **sim_opts).run(vpn, kind, np.ones(64, np.int64))


def time_replay(npages: int, sim_kwargs: dict, vpn, kind, count, reps: int, **sim_opts) -> dict:
    """Best-of-``reps`` wall time of ``Simulator.run`` over the whole trace, a fresh simulator per repetition
    (built outside the timing), after a warm-up call."""
    _warm(sim_kwargs, **sim_opts)
    box = {}

    def setup():
        box.pop("sim", None)
        box["sim"] = make_simulator(npages, sim_kwargs, **sim_opts)

    t = best_of(lambda: box["sim"].run(vpn, kind, count), reps, setup)
    c = box["sim"].counters()
    n = int(vpn.shape[0])
    return {
        "accesses": n,
        "seconds": t["seconds"],
        "cpu_seconds": t["cpu_seconds"],
        "accesses_per_s": n / t["seconds"],
        "ns_per_access": t["seconds"] / n * 1e9,
        "faults": c["minflt"] + c["majflt"],
        "counters": {k: c[k] for k in ("minflt", "majflt", "faultaround_calls", "ptes_installed", "fault_wp_shared")},
    }


class Report:
    """Rows of the table, targets and raw measurements."""

    def __init__(self):
        self.rows: list[dict] = []
        self.targets: list[dict] = []
        self.raw: dict = {}

    def row(self, section: str, metric: str, value, unit: str = "", note: str = "") -> None:
        self.rows.append({"section": section, "metric": metric, "value": value, "unit": unit, "note": note})

    def target(self, name: str, value, goal: float, unit: str, *, higher_is_better: bool, note: str = "") -> None:
        """Record a target: met when ``value`` >= ``goal`` (or <= when lower is better); ``factor`` > 1 says by
        how much it is met, < 1 by how much it is missed."""
        if value is None:
            self.targets.append(
                {"name": name, "value": None, "goal": goal, "unit": unit, "met": None, "factor": None, "note": note}
            )
            return
        value = float(value)
        if higher_is_better:
            met = value >= goal
            factor = value / goal if goal else float("inf")
        else:
            met = value <= goal
            factor = goal / value if value else float("inf")
        op = ">=" if higher_is_better else "<="
        self.targets.append(
            {
                "name": name,
                "value": value,
                "goal": goal,
                "op": op,
                "unit": unit,
                "met": bool(met),
                "factor": factor,
                "note": note,
            }
        )


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int | np.integer):
        return f"{int(v):,}"
    if isinstance(v, float | np.floating):
        a = abs(float(v))
        if a == 0:
            return "0"
        if a >= 1e9:
            return f"{v / 1e9:.2f} G"
        if a >= 1e6:
            return f"{v / 1e6:.2f} M"
        if a >= 1e4:
            return f"{v / 1e3:.1f} k"
        if a >= 100:
            return f"{v:.0f}"
        if a >= 10:
            return f"{v:.2f}"
        if a >= 1:
            return f"{v:.3f}"
        return f"{v:.3g}"
    return str(v)


def render(report: Report, machine: dict, sizes: Sizes, model_label: str) -> str:
    """The text table."""
    lines = [
        f"fastfault benchmarks ({sizes.name}) -- {machine['cpu']} (family {machine['cpu_family']} model "
        f"{machine['cpu_model']}), {machine['usable_cores']} cores, {machine['mem_total_gib']} GiB, "
        f"Linux {machine['kernel']}",
        f"python {machine['python']}, numpy {machine['numpy']}, numba {machine['numba']}, commit "
        f"{machine['git_commit'][:10]}, {machine['date']}, load average {machine['loadavg_start'][0]:.2f} at start, "
        f"{machine.get('loadavg_end', [0])[0]:.2f} at end",
        f"full model = {model_label}",
        "",
    ]
    w_sec = max(len(r["section"]) for r in report.rows) if report.rows else 8
    w_met = max(len(r["metric"]) for r in report.rows) if report.rows else 8
    for r in report.rows:
        val = _fmt(r["value"])
        lines.append(
            f"{r['section']:<{w_sec}}  {r['metric']:<{w_met}}  {val:>12} {r['unit']:<10}"
            + (f"  {r['note']}" if r["note"] else "")
        )
    lines += ["", "targets"]
    w_t = max(len(t["name"]) for t in report.targets) if report.targets else 8
    for t in report.targets:
        if t["met"] is None:
            lines.append(f"  {t['name']:<{w_t}}  skipped  {t['note']}")
            continue
        status = "MET   " if t["met"] else "MISSED"
        if t["met"]:
            how = f"x{t['factor']:.2f} margin"
        elif 1 / t["factor"] < 1.1:
            how = f"missed by {100 * (1 / t['factor'] - 1):.1f} %"
        else:
            how = f"missed by x{1 / t['factor']:.1f}"
        lines.append(
            f"  {t['name']:<{w_t}}  {status}  {_fmt(t['value'])} {t['op']} {_fmt(t['goal'])} {t['unit']}  ({how})"
            + (f"  {t['note']}" if t["note"] else "")
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------------


def section_replay(rep: Report, sizes: Sizes, sim_kwargs: dict, model_label: str, traces: dict) -> None:
    """Full-model replay vs the streaming floor, zipf and uniform."""
    kind, count = traces["kind"], traces["count"]
    rep.raw["replay"] = {}
    for name, limit, label in (("zipf", 5.0, "zipf"), ("uniform", 40.0, "uniform random")):
        vpn = traces[name]
        fl = measure_floor(vpn, kind, count, sizes.reps, npages=sizes.file_pages)
        sim = time_replay(sizes.file_pages, sim_kwargs, vpn, kind, count, sizes.reps)
        ratio = fl["accesses_per_s"] / sim["accesses_per_s"]
        rep.raw["replay"][name] = {"floor": fl, "model": sim}
        rep.row("replay", f"{label}: full model", sim["accesses_per_s"], "acc/s", f"{sim['ns_per_access']:.1f} ns/acc")
        rep.row(
            "replay",
            f"{label}: streaming floor",
            fl["accesses_per_s"],
            "acc/s",
            f"{fl['gb_per_s']:.1f} GB/s ({BYTES_PER_ACCESS} B/access)",
        )
        rep.row("replay", f"{label}: floor / model", ratio, "x")
        rep.row(
            "diag",
            f"{label}: gather floor (3 B/page state)",
            fl["gather_accesses_per_s"],
            "acc/s",
            "stream + 3 byte loads at the page",
        )
        if name == "zipf":
            rep.target(
                "zipf replay within 5x of the streaming floor",
                ratio,
                limit,
                "x slower",
                higher_is_better=False,
                note=model_label,
            )
        else:
            rep.target(
                "uniform replay >= 1/40 of the streaming rate",
                ratio,
                limit,
                "x slower",
                higher_is_better=False,
                note=model_label,
            )
    rep.raw["replay"]["file_pages"] = sizes.file_pages
    rep.raw["replay"]["model"] = model_label


def section_diag(rep: Report, sizes: Sizes, sim_kwargs: dict, traces: dict) -> None:
    """Where the time goes: the hit path alone (one page: every access after the first is a hit), and the
    TLB model's share (the same trace prefix with and without it)."""
    n = sizes.diag_accesses
    one = np.full(n, BASE_VPN, np.int64)
    zeros = np.zeros(n, np.uint8)
    ones = np.ones(n, np.int64)
    rep.raw["diag"] = {}
    cases = [("hit path: one page, loads", one, zeros, ones)]
    cases += [
        (f"{name}: first {n:,} accesses", traces[name][:n], traces["kind"][:n], ones) for name in ("zipf", "uniform")
    ]
    # the same uniform accesses moved outside the file mapping: anonymous memory, most of a real program's trace
    cases.append(("uniform, outside file VMAs", traces["uniform"][:n] + sizes.file_pages, traces["kind"][:n], ones))
    for label, vpn, kind, count in cases:
        full = time_replay(sizes.file_pages, sim_kwargs, vpn, kind, count, sizes.reps)
        bare = time_replay(sizes.file_pages, {}, vpn, kind, count, sizes.reps) if sim_kwargs else full
        rep.raw["diag"][label] = {"full_model": full, "fault_path_only": bare}
        rep.row("diag", f"{label}, full model", full["accesses_per_s"], "acc/s", f"{full['ns_per_access']:.1f} ns/acc")
        if sim_kwargs:
            share = 1 - bare["seconds"] / full["seconds"]
            rep.row(
                "diag",
                f"{label}, fault path only",
                bare["accesses_per_s"],
                "acc/s",
                f"{bare['ns_per_access']:.1f} ns/acc; TLB model = {100 * share:.0f} % of the full model's time",
            )
    if isinstance(sim_kwargs.get("tlb"), str):
        # The TLB model alone (every page mapped: a miss walks and fills), one jitted call per trace.
        from fastfault.tlb import build_tlb, run_tlb, tlb_preset

        spec = tlb_preset(sim_kwargs["tlb"])
        for name in ("zipf", "uniform"):
            vpn = traces[name][:n]
            run_tlb(build_tlb(spec), vpn[:64])
            box = {}

            def setup(box=box):
                box["t"] = build_tlb(spec)

            def body(box=box, vpn=vpn):
                box["r"] = run_tlb(box["t"], vpn)

            t = best_of(body, sizes.reps, setup)
            miss = float((box["r"] == 2).mean())
            ns = t["seconds"] / vpn.shape[0] * 1e9
            rep.raw["diag"][f"{name}: TLB model alone"] = {**t, "miss_fraction": miss, "ns_per_access": ns}
            rep.row(
                "diag",
                f"{name}: TLB model alone ({sim_kwargs['tlb']})",
                vpn.shape[0] / t["seconds"],
                "acc/s",
                f"{ns:.1f} ns/acc; {100 * miss:.0f} % miss L1 and L2 (lookup + walk + fill)",
            )


def section_reference(rep: Report, sizes: Sizes, sim_kwargs: dict, traces: dict) -> None:
    """kernels_py on a slice of each trace vs the jitted kernels on the same slice.

    The reference replays the fault path only (the TLB model has its own reference), so the target is judged
    on the jitted fault path over the same accesses; the full model's rate is shown next to it."""
    try:
        from kernels_py.replay import replay_trace as py_replay
    except ImportError as err:
        rep.row("reference", "kernels_py", None, "", f"skipped: {err}")
        rep.target("jitted >= 300x faster than kernels_py", None, 300, "x", higher_is_better=True, note="no kernels_py")
        return
    params = inspect.signature(py_replay).parameters
    # replay_trace(s, vpn, kind, count), or (s, t, a, vpn, kind, count) with the TLB and aging off
    off = (None, None) if "t" in params or any(p.kind is p.VAR_POSITIONAL for p in params.values()) else ()
    m = sizes.ref_accesses
    kind, count = traces["kind"][:m], traces["count"][:m]
    rep.raw["reference"] = {}
    speedups = []
    for name in ("zipf", "uniform"):
        vpn = traces[name][:m]
        sim = make_simulator(sizes.file_pages, {})
        t0 = time.perf_counter()
        py_replay(sim.state, *off, vpn, kind, count)
        t_py = time.perf_counter() - t0
        py_counters = sim.counters()
        bare = time_replay(sizes.file_pages, {}, vpn, kind, count, sizes.reps)
        full = time_replay(sizes.file_pages, sim_kwargs, vpn, kind, count, sizes.reps) if sim_kwargs else bare
        check = make_simulator(sizes.file_pages, {})
        check.run(vpn, kind, count)
        agree = check.counters() == py_counters
        speed = t_py / bare["seconds"]
        speedups.append(speed)
        rep.raw["reference"][name] = {
            "accesses": m,
            "py_seconds": t_py,
            "py_accesses_per_s": m / t_py,
            "jit_fault_path": bare,
            "jit_full_model": full,
            "speedup": speed,
            "speedup_full_model": t_py / full["seconds"],
            "counters_agree": agree,
        }
        rep.row("reference", f"kernels_py, {name} slice", m / t_py, "acc/s", f"{m:,} accesses, fault path")
        rep.row("reference", "  jitted fault path, same slice", bare["accesses_per_s"], "acc/s")
        rep.row(
            "reference",
            f"  speed-up on {name}",
            speed,
            "x",
            ("counters agree" if agree else "COUNTERS DIFFER")
            + (f"; full model x{t_py / full['seconds']:.0f}" if sim_kwargs else ""),
        )
    rep.target(
        "jitted >= 300x faster than kernels_py",
        min(speedups),
        300,
        "x",
        higher_is_better=True,
        note="fault path vs fault path, worse of the zipf/uniform slices",
    )


def _build_real_faults(tmp: Path) -> Path | None:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        return None
    exe = tmp / "real_faults"
    subprocess.run([cc, "-O2", "-o", str(exe), str(HERE / "real_faults.c")], check=True, capture_output=True)
    return exe


def _real_touch(exe: Path, path: Path, pages: int, mode: str, reps: int) -> dict:
    out = subprocess.run(
        [str(exe), "touch", str(path), str(pages), mode, str(reps)], check=True, capture_output=True, text=True
    )
    runs = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    best = min(runs, key=lambda r: r["ns"])
    best["all_ns"] = [r["ns"] for r in runs]
    return best


def _layout_histogram(path: Path) -> dict | str:
    try:
        from fastfault.kernel.layout import layout_access_problem, read_file_layout

        problem = layout_access_problem()
        if problem:
            return f"not checked: {problem}"
        fs = read_file_layout(path)
        sizes, counts = np.unique(fs, return_counts=True)
        return {str(int(s)): int(c) for s, c in zip(sizes, counts, strict=True)}
    except Exception as err:  # noqa: BLE001 - the check is informative only
        return f"not checked: {err}"


def section_faults(rep: Report, sizes: Sizes, sim_kwargs: dict, tmp: Path) -> None:
    """Simulated vs real faults on a sequential pass over a cached order-0 file."""
    npages = sizes.fault_pages
    vpn = np.arange(npages, dtype=np.int64) + BASE_VPN
    kind = np.zeros(npages, np.uint8)
    count = np.ones(npages, np.int64)
    sim = {}
    bare = {}
    for fa in (4096, 65536):
        r = time_replay(npages, sim_kwargs, vpn, kind, count, sizes.reps, fault_around=fa)
        r["ns_per_fault"] = r["seconds"] / max(r["faults"], 1) * 1e9
        r["faults_per_s"] = r["faults"] / r["seconds"]
        sim[fa] = r
        rep.row(
            "faults",
            f"simulated, fault_around {fa // 1024} KiB",
            r["faults_per_s"],
            "faults/s",
            f"{r['ns_per_fault']:.1f} ns/fault, {r['faults']:,} faults / {npages:,} pages",
        )
        if sim_kwargs:
            b = time_replay(npages, {}, vpn, kind, count, sizes.reps, fault_around=fa)
            b["ns_per_fault"] = b["seconds"] / max(b["faults"], 1) * 1e9
            bare[fa] = b
            rep.row(
                "faults",
                f"  fault path only (no TLB model), {fa // 1024} KiB",
                b["faults"] / b["seconds"],
                "faults/s",
                f"{b['ns_per_fault']:.1f} ns/fault (the accesses between faults included)",
            )
    rep.raw["faults"] = {
        "simulated": {str(k): v for k, v in sim.items()},
        "fault_path_only": {str(k): v for k, v in bare.items()},
        "pages": npages,
    }

    exe = None
    try:
        exe = _build_real_faults(tmp)
    except subprocess.CalledProcessError as err:
        rep.row("faults", "real kernel", None, "", f"skipped: gcc failed: {err.stderr[-200:]}")
    if exe is None:
        for name in ("64 KiB", "4 KiB"):
            rep.target(f"simulated fault >= 100x cheaper than real ({name})", None, 100, "x", higher_is_better=True)
        return
    path = tmp / "real_faults.dat"
    t0 = time.perf_counter()
    subprocess.run([str(exe), "create", str(path), str(npages)], check=True)
    create_s = time.perf_counter() - t0
    layout = _layout_histogram(path)
    real = {}
    try:
        for mode in ("normal", "random"):
            real[mode] = _real_touch(exe, path, npages, mode, sizes.real_reps)
        split_pages = min(sizes.split_pages, npages)
        real["split"] = _real_touch(exe, path, split_pages, "split", sizes.real_reps)
    finally:
        path.unlink(missing_ok=True)
    rep.raw["faults"]["real"] = real
    rep.raw["faults"]["real_file"] = {
        "fs": _fstype(tmp),
        "create_seconds": create_s,
        "folio_sizes": layout,
        "layout_note": "folio size (pages) -> pages, read back with /proc/kpageflags",
    }
    for mode, label, sim_fa in (
        ("normal", "real kernel, one VMA", 65536),
        ("random", "real kernel, one VMA, MADV_RANDOM", 65536),
        ("split", "real kernel, 1-page VMAs (1 page/fault)", 4096),
    ):
        r = real[mode]
        ratio = r["ns_per_fault"] / sim[sim_fa]["ns_per_fault"]
        r["ratio_to_simulated"] = ratio
        rep.row(
            "faults",
            label,
            r["ns_per_fault"],
            "ns/fault",
            f"{r['minflt'] + r['majflt']:,} faults / {r['pages']:,} pages, {r['ns_per_page']:.0f} ns/page",
        )
        rep.row("faults", f"  real / simulated ({sim_fa // 1024} KiB)", ratio, "x")
    rep.target(
        "simulated fault >= 100x cheaper than real (64 KiB fault-around)",
        real["normal"]["ratio_to_simulated"],
        100,
        "x",
        higher_is_better=True,
        note="normal mapping; MADV_RANDOM: x{:.2g}".format(real["random"]["ratio_to_simulated"]),
    )
    rep.target(
        "simulated fault >= 100x cheaper than real (1 page per fault)",
        real["split"]["ratio_to_simulated"],
        100,
        "x",
        higher_is_better=True,
        note="real: 1-page VMAs; simulated: fault_around 4 KiB",
    )


_SWEEP_TOML = """
[experiment]
name = "bench_sweep"
description = "benchmarks/run.py: {points} equal points for the worker speed-up"
seed = 0
replicates = 1

[fixed]
profile = "linux-6.18"
{fixed}
[sweep]
fault_around_bytes = [{values}]

[[workloads]]
name = "zipf"
params = {{ npages = {npages}, n = {n}, alpha = 1.0 }}
"""


def _pool_point(kwargs: dict) -> float:
    """One point of the fallback sweep (a module-level function, so the spawn pool can pickle it)."""
    from fastfault.api import run

    t0 = time.perf_counter()
    run("zipf", **kwargs)
    return time.perf_counter() - t0


def _point_seconds(points_dir: Path) -> dict:
    """Seconds of each durable run of a sweep and per worker process (``DIR/points/*.json``)."""
    secs = []
    per_worker: dict[str, float] = {}
    for f in sorted(points_dir.glob("*.json")):
        try:
            rec = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if "seconds" in rec:
            secs.append(float(rec["seconds"]))
            w = str(rec.get("worker", "?"))
            per_worker[w] = per_worker.get(w, 0.0) + float(rec["seconds"])
    return {"point_seconds": secs, "worker_seconds": per_worker}


def section_sweep(rep: Report, sizes: Sizes, sim_kwargs: dict, tmp: Path) -> None:
    """The same small experiment on 1 and on 2 workers."""
    values = [f'"{(4 << i)}KiB"' for i in range(sizes.sweep_points)]
    fixed = "".join(f'{k} = "{v}"\n' for k, v in sim_kwargs.items())
    try:
        from fastfault.sweep.config import parse_experiment
        from fastfault.sweep.runner import run_sweep

        how = "fastfault.sweep.runner.run_sweep"
    except ImportError:
        parse_experiment = run_sweep = None
        how = "multiprocessing pool over fastfault.api.run (fastfault.sweep not available)"
    times = {}
    info = {}
    if run_sweep is not None:
        text = _SWEEP_TOML.format(
            points=sizes.sweep_points, fixed=fixed, values=", ".join(values), npages=sizes.sweep_npages, n=sizes.sweep_n
        )
        exp = parse_experiment(text)
        # Load every kernel the points use in this process first, so that neither timed run pays it
        # (run_sweep warms up too, but the first run in a process would also load them).
        from fastfault.sweep.runner import warm_up

        warm_up(exp)
        for workers in (1, 2):
            out = tmp / f"sweep_{workers}"
            t0 = time.perf_counter()
            summary = run_sweep(exp, out, workers=workers, progress=False, force=True)
            times[workers] = time.perf_counter() - t0
            info[workers] = {"backend": summary.backend, "runs": summary.total, "seconds_reported": summary.seconds}
            info[workers].update(_point_seconds(out / "points"))
            shutil.rmtree(out, ignore_errors=True)
    else:
        import concurrent.futures as cf
        import multiprocessing as mp

        points = [
            {
                "workload_params": {"npages": sizes.sweep_npages, "n": sizes.sweep_n},
                "fault_around_bytes": 4096 << i,
                **sim_kwargs,
            }
            for i in range(sizes.sweep_points)
        ]
        _pool_point(dict(points[0], workload_params={"npages": 64, "n": 100}))  # warm the numba cache
        for workers in (1, 2):
            t0 = time.perf_counter()
            if workers == 1:
                for p in points:
                    _pool_point(p)
            else:
                with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
                    list(pool.map(_pool_point, points))
            times[workers] = time.perf_counter() - t0
    speedup = times[1] / times[2]
    rep.raw["sweep"] = {
        "how": how,
        "points": sizes.sweep_points,
        "workload": {"name": "zipf", "npages": sizes.sweep_npages, "n": sizes.sweep_n},
        "seconds": {str(k): v for k, v in times.items()},
        "info": {str(k): v for k, v in info.items()},
        "speedup": speedup,
    }
    note = f"{sizes.sweep_points} points, zipf npages={sizes.sweep_npages:,} n={sizes.sweep_n:,}"
    rep.row("sweep", "1 worker", times[1], "s", note)
    rep.row("sweep", "2 workers", times[2], "s", how)
    if info.get(1, {}).get("point_seconds") and info.get(2, {}).get("point_seconds"):
        busy = max(info[2]["worker_seconds"].values())
        rep.row(
            "sweep",
            "  2 workers: busiest worker's points",
            busy,
            "s",
            f"points {sum(info[2]['point_seconds']):.1f} s in workers vs {sum(info[1]['point_seconds']):.1f} s serial;"
            f" {times[2] - busy:.1f} s outside points (pool start-up, warm-up)",
        )
    rep.row("sweep", "speed-up", speedup, "x", f"1-min load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    rep.target("2 workers >= 1.8x faster than 1", speedup, 1.8, "x", higher_is_better=True)


def _arrays_nbytes(obj) -> dict[str, int]:
    """nbytes of every numpy array in a NamedTuple / tuple / ndarray."""
    out = {}
    if isinstance(obj, np.ndarray):
        return {"": obj.nbytes}
    fields = getattr(obj, "_fields", None)
    if fields is not None:
        for f in fields:
            v = getattr(obj, f)
            if isinstance(v, np.ndarray):
                out[f] = v.nbytes
            elif isinstance(v, tuple):
                for k, b in _arrays_nbytes(v).items():
                    out[f"{f}.{k}" if k else f] = b
    return out


def simulator_bytes(sim) -> dict:
    """State arrays of a Simulator (its ``state`` and any other NamedTuple of arrays it holds, e.g. a TLB), and
    what else it keeps alive (the FileSpec arrays it was built from)."""
    state = {f"state.{k}": v for k, v in _arrays_nbytes(sim.state).items()}
    for name, val in vars(sim).items():
        if name == "state":
            continue
        if isinstance(val, np.ndarray) or getattr(val, "_fields", None) is not None:
            state.update({f"{name}.{k}" if k else name: v for k, v in _arrays_nbytes(val).items()})
    inputs = 0
    for f in getattr(sim, "files", []):
        for attr in ("folio_size", "locked", "readahead", "workingset"):
            a = getattr(f, attr, None)
            if isinstance(a, np.ndarray):
                inputs += a.nbytes
    return {"arrays": state, "state_bytes": int(sum(state.values())), "input_bytes": int(inputs)}


def _big_child(pages: int, accesses: int) -> None:
    """Run in a subprocess: build a simulator of a ``pages``-page cold file mapping, replay a small uniform random
    trace, print JSON (build time, array sizes, peak RSS)."""
    sim_kwargs, label = full_model()
    t0 = time.perf_counter()
    sim = make_simulator(pages, sim_kwargs, cold=True)
    build_s = time.perf_counter() - t0
    rss_build = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    b = simulator_bytes(sim)
    rng = np.random.default_rng(7)
    vpn = rng.integers(0, pages, size=accesses, dtype=np.int64) + BASE_VPN
    kind = np.zeros(accesses, np.uint8)
    count = np.ones(accesses, np.int64)
    _warm(sim_kwargs)
    t0 = time.perf_counter()
    sim.run(vpn, kind, count)
    replay_s = time.perf_counter() - t0
    c = sim.counters()
    print(
        json.dumps(
            {
                "pages": pages,
                "mapping_bytes": pages * PAGE,
                "model": label,
                "build_seconds": build_s,
                "peak_rss_after_build": rss_build,
                "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                **b,
                "accesses": accesses,
                "replay_seconds": replay_s,
                "faults": c["minflt"] + c["majflt"],
                "majflt": c["majflt"],
                "ra_pages": c["ra_pages"],
            }
        )
    )


def section_memory(rep: Report, sizes: Sizes, sim_kwargs: dict) -> None:
    """Bytes per page, the largest mapping in 4 GiB, and a real 1 TiB (or --quick: smaller) mapping."""
    per = {}
    simstate = {}
    for npages in (sizes.file_pages, 2 * sizes.file_pages):
        sim = make_simulator(npages, sim_kwargs)
        per[npages] = simulator_bytes(sim)
        simstate[npages] = sum(_arrays_nbytes(sim.state).values())
        del sim
    n1, n2 = sizes.file_pages, 2 * sizes.file_pages
    per_page = simstate[n1] / n1  # the target: SimState arrays / pages
    b1 = per[n1]["state_bytes"]  # everything the kernels keep: SimState, TLB, aging
    slope = (per[n2]["state_bytes"] - b1) / (n2 - n1)
    fixed = b1 - slope * n1
    in_slope = (per[n2]["input_bytes"] - per[n1]["input_bytes"]) / (n2 - n1)
    max_pages = int((4 * GIB - fixed) // slope)
    max_pages_kept = int((4 * GIB - fixed) // (slope + in_slope))
    rep.raw["memory"] = {
        "pages": n1,
        "simstate_bytes": simstate[n1],
        "simstate_bytes_per_page": per_page,
        "arrays": per[n1]["arrays"],
        "all_state_bytes": b1,
        "all_state_bytes_per_page": b1 / n1,
        "marginal_bytes_per_page": slope,
        "fixed_bytes": fixed,
        "input_bytes_per_page_kept_by_simulator": in_slope,
        "max_mapping_in_4gib_bytes": max_pages * PAGE,
        "max_mapping_in_4gib_with_inputs_bytes": max_pages_kept * PAGE,
    }
    rep.row("memory", f"SimState per page ({n1:,}-page file)", per_page, "B/page", f"{simstate[n1]:,} B")
    rep.row(
        "memory",
        "all kernel state per page (+TLB, aging)",
        b1 / n1,
        "B/page",
        f"marginal {slope:.4f} B/page + {fixed / 1024:.0f} KiB fixed",
    )
    rep.row("memory", "largest mapping in 4 GiB", max_pages * PAGE / (1 << 40), "TiB", f"{max_pages:,} pages")
    rep.row(
        "memory",
        "  ... counting FileSpec kept by Simulator",
        max_pages_kept * PAGE / (1 << 40),
        "TiB",
        f"+{in_slope:.0f} B/page of int64 folio_size",
    )
    rep.target("<= 3 bytes of state per page", per_page, 3.0, "B/page", higher_is_better=False, note="SimState arrays")

    pages = sizes.big_pages
    need = pages * 40  # FileSpec int64 + validation temporaries (measured peak is ~31 B/page)
    label = f"{pages * PAGE / (1 << 40):g} TiB" if pages * PAGE >= 1 << 40 else f"{pages * PAGE / GIB:g} GiB"
    if _mem_available() < need:
        rep.row("memory", f"{label} mapping", None, "", f"skipped: needs ~{need / GIB:.0f} GiB free")
        return
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--_big", str(pages), str(sizes.big_accesses)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if out.returncode != 0:
        rep.row("memory", f"{label} mapping", None, "", f"failed: {out.stderr.strip()[-300:]}")
        return
    big = json.loads(out.stdout.strip().splitlines()[-1])
    rep.raw["memory"]["big"] = big
    ok = big["state_bytes"] < GIB
    rep.row(
        "memory",
        f"{label} mapping: state arrays",
        big["state_bytes"] / GIB,
        "GiB",
        ("< 1 GiB" if ok else ">= 1 GiB") + f", {big['pages']:,} pages, built in {big['build_seconds']:.1f} s",
    )
    rep.row("memory", f"{label} mapping: peak RSS of build", big["peak_rss_after_build"] / GIB, "GiB", "subprocess")
    rep.row(
        "memory",
        f"{label} mapping: replay",
        big["accesses"] / big["replay_seconds"],
        "acc/s",
        f"{big['accesses']:,} uniform accesses, cold file ({big['majflt']:,} major faults)",
    )
    rep.raw["memory"]["big_state_under_1gib"] = ok


def _cli() -> list[str]:
    exe = Path(sys.executable).parent / "fastfault"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "fastfault"]


def _wall(cmd: list[str], env=None) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env, timeout=1800)
    return time.perf_counter() - t0


def section_startup(rep: Report, sizes: Sizes, skip_cold: bool) -> None:
    """``fastfault --help`` and a first tiny ``fastfault run``, warm and empty numba cache."""
    cli = _cli()
    helps = [_wall([*cli, "--help"]) for _ in range(sizes.startup_reps)]
    run_cmd = [*cli, "run", "-w", "sequential", "-p", "npages=256"]
    _wall(run_cmd)  # fills the default numba cache if it is stale
    warm = [_wall(run_cmd) for _ in range(max(1, min(3, sizes.startup_reps)))]
    shim = shutil.which("fastfault")
    shim_help = None
    if shim and Path(shim).resolve() != Path(cli[0]).resolve():
        shim_help = min(_wall([shim, "--help"]) for _ in range(sizes.startup_reps))
    cold = None
    if not skip_cold:
        with tempfile.TemporaryDirectory(prefix="ff-numba-cold-") as d:
            cold = _wall(run_cmd, env=dict(os.environ, NUMBA_CACHE_DIR=d))
    rep.raw["startup"] = {
        "command": [Path(c).name if os.sep in c else c for c in cli],
        "help_seconds": helps,
        "path_shim": Path(shim).name if shim else None,
        "shim_help_seconds": shim_help,
        "run_command": [Path(run_cmd[0]).name, *run_cmd[1:]],  # no machine paths in results
        "warm_run_seconds": warm,
        "cold_run_seconds": cold,
    }
    shown = " ".join(Path(c).name if os.sep in c else c for c in cli)  # no machine paths in the table
    rep.row("startup", "fastfault --help", min(helps), "s", f"best of {len(helps)}, {shown}")
    if shim_help is not None:
        rep.row("startup", "  through the PATH shim", shim_help, "s", shim)
    rep.row("startup", "first run, warm numba cache", min(warm), "s", "fastfault run -w sequential -p npages=256")
    rep.row("startup", "first run, empty numba cache", cold, "s", "skipped" if cold is None else "compiles everything")
    rep.target("fastfault --help < 0.5 s", min(helps), 0.5, "s", higher_is_better=False)
    rep.target("first run with a warm cache < 2 s", min(warm), 2.0, "s", higher_is_better=False)


# --------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------

SECTIONS = ("replay", "diag", "reference", "faults", "sweep", "memory", "startup")


def run_benchmarks(sizes: Sizes, *, skip: tuple[str, ...] = (), skip_cold: bool = False) -> dict:
    """Run every section not in ``skip``; return the JSON document (``table`` holds the printed text)."""
    machine = machine_info()
    sim_kwargs, model_label = full_model()
    rep = Report()
    t_all = time.perf_counter()
    timings = {}
    load = {}
    traces = None
    with tempfile.TemporaryDirectory(prefix="ff-bench-", dir="/var/tmp" if Path("/var/tmp").is_dir() else None) as d:
        tmp = Path(d)
        for name in SECTIONS:
            if name in skip:
                continue
            load[name] = os.getloadavg()[0]
            t0 = time.perf_counter()
            if name in ("replay", "diag", "reference") and traces is None:
                traces = make_traces(sizes.accesses, sizes.file_pages)
            if name == "replay":
                section_replay(rep, sizes, sim_kwargs, model_label, traces)
            elif name == "diag":
                section_diag(rep, sizes, sim_kwargs, traces)
            elif name == "reference":
                section_reference(rep, sizes, sim_kwargs, traces)
            elif name == "faults":
                section_faults(rep, sizes, sim_kwargs, tmp)
            elif name == "sweep":
                section_sweep(rep, sizes, sim_kwargs, tmp)
            elif name == "memory":
                section_memory(rep, sizes, sim_kwargs)
            elif name == "startup":
                section_startup(rep, sizes, skip_cold)
            timings[name] = time.perf_counter() - t0
            print(f"[{name}: {timings[name]:.1f} s]", file=sys.stderr, flush=True)
    machine["loadavg_end"] = list(os.getloadavg())
    table = render(rep, machine, sizes, model_label)
    return {
        "machine": machine,
        "sizes": asdict(sizes),
        "model": {"label": model_label, "sim_kwargs": sim_kwargs},
        "rows": rep.rows,
        "targets": rep.targets,
        "raw": rep.raw,
        "section_seconds": timings,
        "section_loadavg_1min": load,
        "total_seconds": time.perf_counter() - t_all,
        "table": table,
    }


def _jsonable(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="shrink every size (1 M accesses, smaller files)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: exercise every code path (the test suite)")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"where to write the JSON (default {DEFAULT_JSON})")
    p.add_argument("--skip", action="append", default=[], choices=SECTIONS, help="skip a section (repeatable)")
    p.add_argument("--no-cold-start", action="store_true", help="skip the empty-numba-cache run (it compiles ~1 min)")
    p.add_argument("--_big", nargs=2, type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._big:
        _big_child(*args._big)
        return 0
    sizes = SMOKE if args.smoke else QUICK if args.quick else FULL
    doc = run_benchmarks(sizes, skip=tuple(args.skip), skip_cold=args.no_cold_start)
    print(doc["table"])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.json.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=_jsonable) + "\n")
    os.replace(tmp, args.json)
    print(f"\nwrote {Path(args.json).name} ({doc['total_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())

"""``fastfault run``: one simulation of a generated workload or a recorded trace."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from fastfault.cli import app
from fastfault.cli.options import (
    AgingEvict,
    AgingInterval,
    AgingPolicy,
    Arch,
    Cost,
    FaultAround,
    Json,
    Prefault,
    Profile,
    Seed,
    Tlb,
)
from fastfault.errors import InputError


def _value(text: str):
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def parse_params(items: list[str] | None) -> dict:
    """``["npages=4096", "alpha=1.1"]`` -> ``{"npages": 4096, "alpha": 1.1}``."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise InputError(f"--param {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        out[k.strip()] = _value(v.strip())
    return out


def parse_orders(text: str | None) -> dict[int, float] | None:
    """``"0:0.7,4:0.2,9:0.1"`` -> ``{0: 0.7, 4: 0.2, 9: 0.1}``."""
    if not text:
        return None
    out = {}
    for part in text.split(","):
        try:
            o, w = part.split(":")
            out[int(o)] = float(w)
        except ValueError:
            raise InputError(f"--folio-orders {text!r}: expected ORDER:WEIGHT,... like 0:0.7,9:0.3") from None
    return out


def parse_layouts(items: list[str] | None) -> dict:
    """``["/usr/lib/libc.so.6=libc.npy"]`` -> ``{"/usr/lib/libc.so.6": array}``."""
    import numpy as np

    out = {}
    for item in items or []:
        path, sep, npy = item.rpartition("=")
        if not sep or not path:
            raise InputError(f"--layout {item!r}: expected PATH=FILE.npy")
        try:
            arr = np.load(npy, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise InputError(f"--layout {npy}: cannot read a saved layout ({err})") from None
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise InputError(f"--layout {npy}: not a folio_size array (int, one dimension)")
        out[path] = arr.astype(np.int64)
    return out


def _fmt(n: float) -> str:
    return f"{n:,.0f}" if float(n).is_integer() else f"{n:,.3f}"


def summary_text(result) -> str:
    """A readable summary of a :class:`~fastfault.api.RunResult`."""
    c, d, p = result.counters, result.derived, result.params
    lines = [
        f"workload {p['workload']}  profile {p['profile']}  arch {p['arch']}  "
        f"fault_around_bytes {p['fault_around_bytes'] // 1024} KiB  prefault {p['prefault']}  seed {p['seed']}",
        "",
        f"accesses            {_fmt(c['accesses'])} ({_fmt(c['file_accesses'])} to file mappings)",
        f"faults              {_fmt(c['minflt'])} minor, {_fmt(c['majflt'])} major "
        f"({_fmt(d['faults_per_1k'])} per 1000 accesses)",
        f"  read, fault-around mapped the page   {_fmt(c['fault_read_faultaround'])}",
        f"  read, filemap_fault + finish_fault   {_fmt(c['fault_read_finish'])}",
        f"  write: cow {_fmt(c['fault_cow'])}, shared {_fmt(c['fault_shared'])}, "
        f"wp copy {_fmt(c['fault_wp_cow'])}, write-notify {_fmt(c['fault_wp_shared'])}",
        f"  access-flag faults                   {_fmt(c['fault_af'])}",
        f"  SIGBUS {_fmt(c['sigbus'])}, SIGSEGV {_fmt(c['segv'])}, pgmajfault {_fmt(c['pgmajfault'])}",
        f"fault-around        {_fmt(c['faultaround_calls'])} calls, {_fmt(c['faultaround_pages'])} PTEs "
        f"({_fmt(d['pages_per_faultaround'])} per call), window sizes {result.window_hist}",
        f"PTEs installed      {_fmt(c['ptes_installed'])}: {_fmt(c['ptes_young'])} young, {_fmt(c['ptes_old'])} old; "
        f"prefaulted and later used {_fmt(c['prefault_used'])} of {_fmt(d['prefaulted_ptes'])}",
        f"PMD mappings        {_fmt(c['pmd_mapped'])} (split {_fmt(c['pmd_split'])}); PTE tables "
        f"{_fmt(c['pte_tables'])}, preallocated tables freed unused {_fmt(c['prealloc_pte_freed'])}",
        f"Rss                 {_fmt(c['mm_filepages'])} file pages, {_fmt(c['mm_anonpages'])} anon pages",
        f"readahead           {_fmt(c['ra_pages'])} pages read, {_fmt(c['ra_sync'])} sync, {_fmt(c['ra_async'])} async",
    ]
    for key, value in result.extra.get("summary", {}).items():
        lines.append(f"{key:<20}{value}")
    return "\n".join(lines)


@app.command("run")
def run(
    workload: str = typer.Option(
        "sequential", "--workload", "-w", help="A generated workload (see `fastfault run --list`)."
    ),
    trace: Path = typer.Option(None, "--trace", help="Replay a recorded trace (.fftrace) instead."),
    param: list[str] = typer.Option(None, "--param", "-p", help="Workload parameter KEY=VALUE (repeatable)."),
    profile: str = Profile,
    arch: str = Arch,
    fault_around: str = FaultAround,
    prefault: str = Prefault,
    seed: int = Seed,
    thp_ratio: float = typer.Option(None, "--thp-ratio", help="Share of 2 MiB regions cached as one THP."),
    folio_orders: str = typer.Option(None, "--folio-orders", help="Folio-order mix, e.g. 0:0.7,4:0.2,9:0.1."),
    cached: float = typer.Option(1.0, "--cached", help="Fraction of each file in the page cache (1 = hot)."),
    layout: list[str] = typer.Option(
        None,
        "--layout",
        help="PATH=FILE.npy: a traced file's real folio layout, saved by `fastfault kernel layout --out` (repeatable).",
    ),
    thp_disabled: bool = typer.Option(False, "--thp-disabled", help="No PMD mappings (THP disabled)."),
    tlb: str = Tlb,
    cost: str = Cost,
    aging_interval: int = AgingInterval,
    aging_policy: str = AgingPolicy,
    aging_evict: bool = AgingEvict,
    list_workloads: bool = typer.Option(False, "--list", help="List the generated workloads and exit."),
    as_json: bool = Json,
) -> None:
    """Run one simulation and print a readable summary (or the counters as JSON)."""
    if list_workloads:
        from fastfault.workloads import WORKLOADS

        for name, fn in WORKLOADS.items():
            doc = (fn.__doc__ or "").strip().splitlines()
            typer.echo(f"{name:<16}{doc[0] if doc else ''}")
        raise typer.Exit(0)
    from fastfault.api import run as run_point

    layouts = parse_layouts(layout)

    source = str(trace) if trace is not None else workload
    if trace is not None and not trace.exists():
        raise InputError(f"--trace {trace}: no such file")
    result = run_point(
        source,
        workload_params=parse_params(param),
        seed=seed,
        profile=profile,
        arch=arch,
        fault_around_bytes=fault_around,
        prefault=prefault,
        thp_disabled=thp_disabled,
        thp_ratio=thp_ratio,
        folio_orders=parse_orders(folio_orders),
        cached=cached,
        layouts=layouts,
        tlb=tlb,
        cost=None if cost == "none" else cost,
        aging_interval=aging_interval,
        aging_policy=aging_policy,
        aging_evict=aging_evict,
    )
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "params": result.params,
                    "counters": result.counters,
                    "derived": result.derived,
                    "window_hist": {str(k): v for k, v in result.window_hist.items()},
                    "tlb": result.extra.get("tlb", {}),
                    "aging": result.extra.get("aging", {}),
                    "census": result.extra.get("census", {}),
                    "cost": result.extra.get("cost", {}),
                },
                default=str,
            )
        )
    else:
        typer.echo(summary_text(result))

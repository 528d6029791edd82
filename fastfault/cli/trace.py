"""``fastfault trace``: record, import, generate and inspect access traces (``.fftrace``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from fastfault.cli import app
from fastfault.errors import InputError

trace_app = typer.Typer(
    help="Access traces: record real programs under valgrind lackey, import lackey logs, "
    "generate synthetic workloads, and summarise .fftrace files.",
    no_args_is_help=True,
)
import_app = typer.Typer(help="Convert traces from other tools into .fftrace files.", no_args_is_help=True)
trace_app.add_typer(import_app, name="import")

_KIND_NAMES = ("load", "store", "ifetch")


@trace_app.command(
    "record",
    context_settings={"allow_interspersed_args": False},
)
def record_cmd(
    command: Annotated[list[str], typer.Argument(help="The program and its arguments (put them after `--`).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .fftrace file (written atomically).")],
    max_accesses: Annotated[
        int | None, typer.Option("--max-accesses", help="Keep only the first N page accesses (then stop the program).")
    ] = None,
    poll: Annotated[
        bool,
        typer.Option(
            "--poll",
            help="Discover mappings by polling /proc/<pid>/maps instead of exact snapshots at every "
            "mmap/munmap (seccomp + ptrace); polling can misattribute reused addresses.",
        ),
    ] = False,
    poll_interval: Annotated[
        float, typer.Option("--poll-interval", help="Seconds between /proc/<pid>/maps snapshots when polling.")
    ] = 0.002,
    keep_untouched: Annotated[
        bool, typer.Option("--keep-untouched", help="Also keep the program's file mappings that no access touched.")
    ] = False,
    echo_output: Annotated[
        bool, typer.Option("--echo-output", help="Show the program's stdout/stderr (discarded by default).")
    ] = False,
) -> None:
    """Run COMMAND under valgrind lackey and save its page-access trace.

    Example: fastfault trace record --out ls.fftrace -- /bin/ls /usr/lib

    The trace's mapping table names the files the program mapped (its binary, ld.so, shared
    libraries, locale files...), read from /proc/<valgrind pid>/maps at every mmap/munmap.
    """
    from fastfault.trace.record import record

    trace = record(
        list(command),
        out,
        max_accesses=max_accesses,
        exact=not poll,
        poll_interval=poll_interval,
        keep_untouched=keep_untouched,
        echo_output=echo_output,
    )
    m = trace.meta
    files = sorted({mp.path for mp in trace.mappings if mp.is_file})
    typer.echo(
        f"{out}: {m['accesses']:,} accesses in {trace.n_rows:,} rows from {m['log_lines']:,} lackey lines "
        f"({m['valgrind_seconds']:.1f} s under valgrind); {len(trace.mappings)} mappings, {len(files)} files"
    )
    if m["unmapped_accesses"]:
        typer.echo(
            f"warning: {m['unmapped_accesses']:,} accesses fell outside every mapping seen (kept as anonymous memory)",
            err=True,
        )
    if m["truncated_at_max_accesses"]:
        typer.echo(f"note: stopped after --max-accesses {max_accesses:,}", err=True)


@import_app.command("lackey")
def import_lackey_cmd(
    log: Annotated[Path, typer.Argument(help="valgrind --tool=lackey --trace-mem=yes log.")],
    maps: Annotated[Path, typer.Option("--maps", help="/proc/PID/maps snapshot of the traced address space.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .fftrace file (written atomically).")],
    allow_unmapped: Annotated[
        bool,
        typer.Option("--allow-unmapped", help="Keep accesses outside every mapping instead of failing."),
    ] = False,
    max_accesses: Annotated[
        int | None, typer.Option("--max-accesses", help="Keep only the first N page accesses.")
    ] = None,
) -> None:
    """Convert a lackey log plus a maps file into a .fftrace file."""
    from fastfault.trace.lackey import import_lackey

    trace = import_lackey(log, maps, out, allow_unmapped=allow_unmapped, max_accesses=max_accesses)
    m = trace.meta
    typer.echo(
        f"{out}: {m['accesses']:,} accesses in {trace.n_rows:,} rows from {m['log_lines']:,} lines; "
        f"{len(trace.mappings)} mappings; {m['unmapped_accesses']:,} unmapped accesses"
    )


def _value(text: str) -> object:
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for conv in (lambda s: int(s, 0), float):
        try:
            return conv(text.strip())
        except ValueError:
            pass
    return text


@trace_app.command("generate")
def generate_cmd(
    workload: Annotated[str, typer.Argument(help="Workload name (see --list).")] = "sequential",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output .fftrace file.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the generator.")] = 0,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Workload parameter KEY=VALUE (repeatable).")
    ] = None,
    list_workloads: Annotated[bool, typer.Option("--list", help="List the workloads and their parameters.")] = False,
) -> None:
    """Generate a synthetic workload and save it as a .fftrace file."""
    from fastfault.workloads import WORKLOADS, make_workload, workload_params

    if list_workloads:
        for name, fn in WORKLOADS.items():
            doc = (fn.__doc__ or "").strip().splitlines()
            typer.echo(f"{name:<14}{doc[0] if doc else ''}")
            params = ", ".join(f"{k}={v!r}" for k, v in workload_params(name).items())
            typer.echo(f"{'':<14}{params}")
        raise typer.Exit(0)
    if out is None:
        raise InputError("trace generate: --out FILE is required")
    params = {}
    for item in param or []:
        key, eq, value = item.partition("=")
        if not eq:
            raise InputError(f"--param {item!r}: expected KEY=VALUE")
        params[key.strip()] = _value(value)
    from fastfault.trace.format import save_trace

    trace = make_workload(workload, seed=seed, **params)
    save_trace(out, trace)
    typer.echo(f"{out}: {trace.n_accesses:,} accesses in {trace.n_rows:,} rows; {len(trace.mappings)} mappings")


def info_table(trace, top: int | None = None) -> list[str]:
    """Readable summary lines of a trace (used by ``fastfault trace info``).

    Parameters
    ----------
    trace : fastfault.trace.format.Trace
        The trace.
    top : int, optional
        Show only the ``top`` mappings with the most accesses.

    Returns
    -------
    list of str
        Lines without newlines.
    """
    import numpy as np

    from fastfault.trace.format import _mapping_index, mapping_index

    idx = mapping_index(trace)
    nmap = len(trace.mappings)
    cnt = trace.count.astype(np.int64)
    slot = np.where(idx < 0, nmap, idx)
    by_kind = np.bincount(slot * 3 + trace.kind, weights=cnt, minlength=3 * (nmap + 1)).reshape(nmap + 1, 3)
    by_kind = by_kind.astype(np.int64)
    uniq = np.unique(trace.vpn)
    page_idx = _mapping_index(uniq, trace.mappings)
    pages = np.bincount(np.where(page_idx < 0, nmap, page_idx), minlength=nmap + 1)
    total = by_kind.sum(axis=0)
    meta = trace.meta
    lines = []
    for key in ("name", "command", "tool", "date", "host", "kernel", "seed"):
        if key in meta:
            value = " ".join(meta[key]) if isinstance(meta[key], list) else meta[key]
            lines.append(f"{key:<16}{value}")
    lines.append(
        f"{'accesses':<16}{int(total.sum()):,} in {trace.n_rows:,} rows "
        f"(load {total[0]:,}, store {total[1]:,}, ifetch {total[2]:,})"
    )
    nfile = sum(m.is_file for m in trace.mappings)
    file_pages_touched = sum(int(pages[i]) for i, m in enumerate(trace.mappings) if m.is_file)
    lines.append(f"{'distinct pages':<16}{uniq.shape[0]:,} ({file_pages_touched:,} in file mappings)")
    lines.append(f"{'mappings':<16}{nmap} ({nfile} file-backed)")
    if by_kind[nmap].sum():
        lines.append(f"{'unmapped':<16}{int(by_kind[nmap].sum()):,} accesses on {int(pages[nmap]):,} pages")
    order = np.argsort(-by_kind[:nmap].sum(axis=1), kind="stable") if top else np.arange(nmap)
    if top:
        order = order[:top]
    lines.append("")
    lines.append(
        f"{'start':>14} {'end':>14} {'perms':5} {'offset':>9} {'pages':>8} {'touched':>8} "
        f"{'load':>11} {'store':>11} {'ifetch':>11}  file"
    )
    for i in order:
        m = trace.mappings[i]
        lk, st, ifc = (int(x) for x in by_kind[i])
        lines.append(
            f"{m.start:>14x} {m.end:>14x} {m.perms:5} {m.offset:>9x} {m.npages:>8,} {int(pages[i]):>8,} "
            f"{lk:>11,} {st:>11,} {ifc:>11,}  {m.path or '[anon]'}"
        )
    return lines


@trace_app.command("info")
def info_cmd(
    file: Annotated[Path, typer.Argument(help="A .fftrace file.")],
    top: Annotated[int | None, typer.Option("--top", help="Show only the N busiest mappings.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metadata and mapping table as JSON.")] = False,
) -> None:
    """Summarise a trace: accesses, distinct pages, and per mapping the file, offset, pages touched, kinds."""
    from fastfault.trace.format import load_trace

    trace = load_trace(file)
    if as_json:
        from dataclasses import asdict

        typer.echo(
            json.dumps(
                {
                    "rows": trace.n_rows,
                    "accesses": trace.n_accesses,
                    "mappings": [asdict(m) for m in trace.mappings],
                    "meta": trace.meta,
                },
                default=str,
            )
        )
        return
    typer.echo(f"{'trace':<16}{file}")
    for line in info_table(trace, top):
        typer.echo(line)


app.add_typer(trace_app, name="trace")

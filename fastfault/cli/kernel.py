"""``fastfault kernel``: the live kernel as ground truth (check, record, layout)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from fastfault.cli import app
from fastfault.cli.options import Json, Profile
from fastfault.errors import InputError

kernel_app = typer.Typer(
    help="The live kernel as ground truth: check the simulator against recorded cases, "
    "record new cases, read a file's page-cache layout.",
    no_args_is_help=True,
)


@kernel_app.command("check")
def check(
    case_dir: Path = typer.Argument(..., help="A folder of cases (NAME.json + NAME.npz, see FORMAT.md)."),
    as_json: bool = Json,
    profile: str = Profile,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="List matching cases too."),
) -> None:
    """Replay every recorded case and report each field that differs (exit 1 if any does)."""
    from fastfault.kernel.check import check_dir, summarize

    results = check_dir(case_dir, profile=profile)
    matched = sum(r.match for r in results)
    if as_json:
        out = {
            "total": len(results),
            "matched": matched,
            "cases": [{"name": r.name, "kind": r.kind, "match": r.match, "diffs": r.diffs} for r in results],
            "summary": summarize(results),
        }
        typer.echo(json.dumps(out))
    else:
        for r in results:
            if not r.match:
                typer.echo(f"DIFF  {r.name} [{r.kind}]")
                for d in r.diffs:
                    typer.echo(f"      {d}")
            elif verbose:
                typer.echo(f"ok    {r.name} [{r.kind}]")
        summary = summarize(results)
        if matched != len(results):
            typer.echo("fields that differ:")
            for name, e in summary["by_field"].items():
                if e["differ"]:
                    typer.echo(
                        f"  {name}: {e['differ']} of {e['cases']} phases, largest difference {e['max_abs_diff']}"
                    )
            typer.echo("cases matched by kind:")
            for name, e in summary["by_kind"].items():
                typer.echo(f"  {name}: {e['matched']}/{e['cases']}")
        typer.echo(f"{matched}/{len(results)} cases match ({profile})")
    raise typer.Exit(0 if matched == len(results) else 1)


@kernel_app.command("record")
def record(
    out: Path = typer.Option(..., "--out", help="Folder to write the cases to."),
    seed: int = typer.Option(0, "--seed", help="Seeds the touch patterns and random layouts."),
    layouts: list[str] = typer.Option(None, "--layouts", help="Folio layouts (repeatable); default: all."),
    patterns: list[str] = typer.Option(None, "--patterns", help="Touch patterns (repeatable); default: all."),
    mappings: list[str] = typer.Option(
        None, "--mappings", help='Mappings (repeatable), e.g. shared, "private+w", "shared+u+off=1+len=1000".'
    ),
    npages: int = typer.Option(8192, "--npages", help="File size in pages."),
    extended: bool = typer.Option(False, "--extended", help="Record the extended plan (writes, offsets, ...)."),
    quick: bool = typer.Option(False, "--quick", help="Record a small plan of six cases."),
) -> None:
    """Record fault-path cases on the running kernel (root needed to read the folio layout)."""
    from fastfault.kernel import record as rec

    kwargs = {}
    if layouts:
        kwargs["layouts"] = layouts
    if patterns:
        kwargs["patterns"] = patterns
    if mappings:
        kwargs["mappings"] = mappings
    specs = rec.extended_specs(npages) if extended else None
    report = rec.record_cases(out, seed=seed, npages=npages, specs=specs, quick=quick, **kwargs)
    typer.echo(report.summary())
    raise typer.Exit(0 if report.written else 1)


@kernel_app.command("layout")
def layout(
    file: Path = typer.Argument(..., help="A file whose pages are (partly) in the page cache."),
    out: Path = typer.Option(None, "--out", help="Save the layout as .npy (folio size per page, -1 uncached)."),
) -> None:
    """Read a cached file's real folio layout (/proc/self/pagemap + /proc/kpageflags; root only)."""
    import numpy as np

    from fastfault.kernel.layout import describe_layout, read_file_layout

    fs = read_file_layout(file)
    typer.echo(describe_layout(fs))
    if out is not None:
        tmp = out.with_name(out.name + ".tmp")
        with open(tmp, "wb") as fh:
            np.save(fh, fs)
        tmp.replace(out)
        typer.echo(f"saved {out}")


app.add_typer(kernel_app, name="kernel")

__all__ = ["kernel_app", "InputError", "sys"]

"""``fastfault plot``: the standard figures of a sweep, as PNG and SVG."""

from __future__ import annotations

from pathlib import Path

import typer

from fastfault.cli import app
from fastfault.errors import InputError


@app.command("plot")
def plot(
    directory: Path = typer.Argument(
        ...,
        help="A sweep's output directory (holds results.parquet).",
        show_default=False,
    ),
    out: Path = typer.Option(None, "--out", "-o", help="Where to write the figures (default: DIR/figures)."),
    fmt: list[str] = typer.Option(
        ["png", "svg"],
        "--format",
        "-f",
        help="File format (repeatable): png, svg, pdf.",
    ),
    only: list[str] = typer.Option(None, "--only", help="Draw only this figure (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print the written files and notes as JSON."),
) -> None:
    """Draw every standard figure the results support; skip the others with a note.

    Figures: faults vs fault_around_bytes, the fault-around trade-off, fault_around x THP-share
    heatmap, PMD mappings, TLB misses, access-flag faults, false-young pages, estimated-cost
    breakdown, kernel profiles.
    """
    import matplotlib

    matplotlib.use("Agg")

    from fastfault.plotting.figures import FIGURES, save_figures
    from fastfault.sweep.results import load_results

    for f in fmt:
        if f not in ("png", "svg", "pdf"):
            raise InputError(f"--format {f!r}: expected png, svg or pdf")
    for name in only or []:
        if name not in FIGURES:
            raise InputError(f"--only {name!r}: no such figure (one of {', '.join(FIGURES)})")
    df = load_results(directory)
    written, notes = save_figures(df, out or (directory / "figures"), formats=fmt, only=only or None)
    if as_json:
        import json

        typer.echo(json.dumps({"written": [str(p) for p in written], "notes": notes}))
        return
    for note in notes:
        typer.echo(f"note: {note}", err=True)
    for p in written:
        typer.echo(str(p))
    if not written:
        typer.echo("fastfault plot: no figure applies to these results", err=True)

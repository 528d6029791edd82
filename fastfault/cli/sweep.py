"""``fastfault sweep``: run every point of an experiment file, durably, locally or on Dask."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import typer

from fastfault.cli import app
from fastfault.cli.options import ARCHES, PROFILES
from fastfault.errors import InputError


def _resume_command(argv: list[str]) -> str:
    args = [a for a in argv if a != "--force"]
    if "--resume" not in args:
        args.append("--resume")
    return shlex.join(["fastfault", *args])


@app.command("sweep")
def sweep(
    experiment: Path = typer.Argument(
        ...,
        help="Experiment file (experiments/NAME.toml).",
        show_default=False,
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="Output directory (results.parquet, meta.json, points/).",
    ),
    workers: int = typer.Option(
        None,
        "--workers",
        "-j",
        help="Worker processes (default: every core; 1 runs in this process).",
    ),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Finish an interrupted sweep of the same experiment.",
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite OUT even if it holds another experiment."),
    scheduler: str = typer.Option(
        None,
        "--scheduler",
        help="Run on a Dask distributed cluster: tcp://HOST:PORT of its scheduler.",
    ),
    cluster: str = typer.Option(
        None,
        "--cluster",
        help="'local': start a Dask LocalCluster of --workers processes.",
    ),
    scale: float = typer.Option(
        None,
        "--scale",
        help="Multiply the workload sizes (default: scale.default of the experiment).",
    ),
    profile: str = typer.Option(
        None,
        "--profile",
        help=f"Override the kernel profile ({', '.join(PROFILES)}).",
    ),
    arch: str = typer.Option(None, "--arch", help=f"Override the architecture ({', '.join(ARCHES)})."),
    fault_around: str = typer.Option(
        None,
        "--fault-around",
        help="Override fault_around_bytes (4096, 64KiB, 2MiB, ...).",
    ),
    prefault: str = typer.Option(
        None,
        "--prefault",
        help="Override the prefault policy: young, old or arch.",
    ),
    seed: int = typer.Option(None, "--seed", help="Override the experiment's base seed."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate and list the points; run nothing."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar on stderr."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Run an experiment: every point x replicate, each result durable as soon as it finishes.

    The whole experiment is validated first: if any point is invalid, nothing runs and nothing is written.

    Writes OUT/results.parquet (one row per run, sorted by point and replicate) and OUT/meta.json.

    Interrupted by Ctrl-C, or even kill -9? Run the same command with --resume.
    """
    from fastfault.sweep.config import load_experiment

    overrides = {"profile": profile, "arch": arch, "fault_around_bytes": fault_around, "prefault": prefault}
    try:
        exp = load_experiment(experiment, scale=scale, overrides=overrides, seed=seed)
        if dry_run:
            _print_plan(exp, as_json)
            return
        from fastfault.sweep.runner import SweepInterrupted, run_sweep

        try:
            summary = run_sweep(
                exp,
                out,
                workers=workers,
                resume=resume,
                force=force,
                scheduler=scheduler,
                cluster=cluster,
                progress=progress,
            )
        except SweepInterrupted as stop:
            typer.echo(
                f"fastfault sweep: interrupted; {stop.done} of {stop.total} runs are saved in {stop.out}. "
                f"Finish with:\n  {_resume_command(sys.argv[1:])}",
                err=True,
            )
            raise typer.Exit(130) from None
    except KeyboardInterrupt:
        typer.echo("fastfault sweep: interrupted before any run finished; nothing to resume.", err=True)
        raise typer.Exit(130) from None
    if as_json:
        typer.echo(json.dumps(summary.to_dict()))
    else:
        typer.echo(summary.line())


def _print_plan(exp, as_json: bool) -> None:
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "name": exp.name,
                    "points": len(exp.points),
                    "runs": len(exp.runs()),
                    "plan_sha256": exp.plan_sha256,
                    "scale": exp.scale,
                    "axes": exp.axes,
                    "fixed": exp.fixed,
                },
                default=str,
            )
        )
        return
    typer.echo(
        f"{exp.name}: {len(exp.points)} points x {exp.replicates} replicates = {len(exp.runs())} runs "
        f"(scale {exp.scale:g}, plan {exp.plan_sha256[:12]})"
    )
    for k, v in exp.fixed.items():
        typer.echo(f"  fixed  {k} = {v}")
    for k, v in exp.axes.items():
        typer.echo(f"  sweep  {k} = {v}")
    labels = dict.fromkeys(p.workload.label for p in exp.points)
    typer.echo(f"  workloads: {', '.join(labels)}")


__all__ = ["InputError", "sweep"]

"""The ``fastfault`` command line: a thin typer layer over :mod:`fastfault.api`.

Subcommands live in sibling modules and import numba-backed code lazily, inside
the command functions, so ``fastfault --help`` never loads numba.
"""

from __future__ import annotations

import sys

import typer

from fastfault.errors import InputError

app = typer.Typer(
    name="fastfault",
    help="Simulate Linux's file-backed page-fault path: fault-around, large folios, PTE/PMD installation, "
    "young/old prefault, TLB and accessed bits.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    # Each module adds its commands to `app` when imported.
    for name in ("run", "sweep", "plot", "trace", "kernel"):
        try:
            __import__(f"fastfault.cli.{name}")
        except ModuleNotFoundError as err:  # a subcommand this installation does not ship
            if err.name != f"fastfault.cli.{name}":
                raise


def main() -> None:
    """Entry point of the ``fastfault`` console script."""
    _register()
    try:
        app()
    except InputError as err:
        typer.echo(f"fastfault: error: {err}", err=True)
        sys.exit(2)

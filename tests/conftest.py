"""Shared fixtures: the live-kernel case folders and a helper to run the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

DATA = Path(__file__).parent / "data"
CASE_ROOT = DATA / "kernel-cases"
CASE_DIRS = sorted(p for p in CASE_ROOT.iterdir() if p.is_dir()) if CASE_ROOT.is_dir() else []

settings.register_profile("default", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")


def run_cli(*args: str, timeout: float = 300, cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m fastfault ARGS`` and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "fastfault", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


@pytest.fixture
def cli():
    return run_cli

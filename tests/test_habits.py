"""Project habits enforced by the test run: ruff (lint and format) and the suite without the JIT."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is installed by the test extra")
def test_ruff_lint_and_format():
    lint = subprocess.run(["ruff", "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = subprocess.run(["ruff", "format", "--check", "."], cwd=ROOT, capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="already running without the JIT")
def test_suite_without_jit():
    """The fault-path tests pass with NUMBA_DISABLE_JIT=1, so coverage can see inside the kernels."""
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-x",
            "-p",
            "no:cacheprovider",
            "tests/test_oracles.py",
            "tests/test_kernel_check.py",
            "-k",
            "not cli and not exit and (oracles or _seq_)",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert " passed" in out.stdout


def test_kernels_compile_without_the_refcount_runtime():
    """The JIT policy turns numba's NRT off (no allocation inside kernels): pin the private option."""
    from fastfault._jit import JIT_OPTIONS

    assert JIT_OPTIONS["_nrt"] is False
    import numba
    import numpy as np

    from fastfault._jit import jit

    @jit
    def add(a):
        a[0] += 1

    x = np.zeros(1, np.int64)
    add(x)
    assert x[0] == 1
    if not numba.config.DISABLE_JIT:
        assert add.targetoptions.get("_nrt") is False

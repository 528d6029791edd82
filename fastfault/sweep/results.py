"""The files a sweep leaves in its output directory.

``DIR/`` holds

``experiment.toml``
    A copy of the experiment file.
``plan.json``
    The experiment's identity (name, file sha256, scale, plan sha256) and every run it expands to.
``points/P.R.json``
    One file per finished run (point ``P``, replicate ``R``): its row and how long it took.
    Each is written to a temporary name, fsynced, renamed into place and the directory fsynced,
    so a run is durable the moment its file exists and a file is never half written.
``results.parquet``
    The tidy table: one row per run, sorted by ``(point, replicate)``; identification columns,
    every parameter (``param_*``, ``wl_*``), every counter and the derived metrics. No timing.
``meta.json``
    Package versions, git revision, experiment hash, host, start and end times, timing.

Rows are JSON-clean dicts (:func:`clean_row`); :func:`assemble` turns a list of them into an
Arrow table with one type per column, whatever order the runs finished in.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import re
import socket
import subprocess
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "ID_COLUMNS",
    "assemble",
    "atomic_write_bytes",
    "clean_row",
    "git_revision",
    "load_results",
    "point_filename",
    "read_points",
    "versions",
    "write_point",
    "write_table",
]

#: Columns that identify a run in ``results.parquet`` (first, in this order).
ID_COLUMNS = ("point", "replicate", "workload_label")

_POINT_RE = re.compile(r"^(\d+)\.(\d+)\.json$")


# --------------------------------------------------------------------------------------------------
# Durable writes.
# --------------------------------------------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a directory be opened/fsynced
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` so that ``path`` is either absent/old or complete and durable.

    Parameters
    ----------
    path : path-like
        Destination.
    data : bytes

    Returns
    -------
    pathlib.Path

    Notes
    -----
    Temporary file in the same directory, ``fsync``, ``os.replace``, ``fsync`` of the directory.
    Leftover ``*.tmp`` files (a crash between write and rename) are ignored by readers.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return path


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON."""
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n").encode())


def point_filename(point: int, replicate: int) -> str:
    """``points/`` file name of a run."""
    return f"{point:07d}.{replicate:04d}.json"


def write_point(points_dir: str | os.PathLike[str], record: Mapping[str, Any]) -> Path:
    """Make one finished run durable: ``{"point", "replicate", "row", "seconds"}``."""
    name = point_filename(int(record["point"]), int(record["replicate"]))
    blob = json.dumps(record, separators=(",", ":"), allow_nan=True).encode()
    return atomic_write_bytes(Path(points_dir) / name, blob)


def read_points(points_dir: str | os.PathLike[str]) -> dict[tuple[int, int], dict[str, Any]]:
    """Every durable run in ``points_dir`` by ``(point, replicate)``; stray temporary files are removed."""
    out: dict[tuple[int, int], dict[str, Any]] = {}
    d = Path(points_dir)
    if not d.is_dir():
        return out
    for entry in os.scandir(d):
        if entry.name.endswith(".tmp"):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
            continue
        m = _POINT_RE.match(entry.name)
        if not m:
            continue
        with open(entry.path, "rb") as fh:
            rec = json.loads(fh.read())
        out[(int(m.group(1)), int(m.group(2)))] = rec
    return out


# --------------------------------------------------------------------------------------------------
# Rows and the table.
# --------------------------------------------------------------------------------------------------


def _clean_value(v: Any) -> Any:
    import numpy as np

    if isinstance(v, np.generic):
        v = v.item()
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if isinstance(v, Mapping):
        return json.dumps({str(k): _clean_value(x) for k, x in v.items()}, sort_keys=True)
    if isinstance(v, list | tuple):
        return json.dumps([_clean_value(x) for x in v])
    return str(v)


def clean_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row with plain Python scalars only (numpy scalars unwrapped, lists and dicts as JSON text)."""
    return {str(k): _clean_value(v) for k, v in row.items()}


def _column_type(values: list[Any]):
    import pyarrow as pa

    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return pa.null(), values
    if kinds == {bool}:
        return pa.bool_(), values
    if kinds == {int}:
        if all(-(1 << 63) <= v < (1 << 63) for v in values if v is not None):
            return pa.int64(), values
        return pa.string(), [None if v is None else str(v) for v in values]
    if kinds <= {int, float}:
        return pa.float64(), [None if v is None else float(v) for v in values]
    if kinds == {str}:
        return pa.string(), values
    return pa.string(), [None if v is None else (v if isinstance(v, str) else json.dumps(v)) for v in values]


def assemble(rows: Iterable[Mapping[str, Any]]):
    """The tidy table of a sweep.

    Parameters
    ----------
    rows : iterable of dict
        Clean rows that hold at least ``point`` and ``replicate``.

    Returns
    -------
    pyarrow.Table
        Sorted by ``(point, replicate)``; identification columns first, then the other columns in
        order of first appearance; one Arrow type per column (nulls where a run lacks a column,
        e.g. a workload parameter another workload does not have).
    """
    import pyarrow as pa

    rows = sorted(rows, key=lambda r: (int(r["point"]), int(r["replicate"])))
    names: dict[str, None] = {c: None for c in ID_COLUMNS}
    for r in rows:
        for k in r:
            names.setdefault(k, None)
    arrays, fields = [], []
    for name in names:
        typ, vals = _column_type([r.get(name) for r in rows])
        arrays.append(pa.array(vals, type=typ))
        fields.append(pa.field(name, typ))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def write_table(table, path: str | os.PathLike[str]) -> Path:
    """Write a parquet file atomically (temporary file, fsync, rename, fsync the directory)."""
    import pyarrow.parquet as pq

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return path


def load_results(path: str | os.PathLike[str]):
    """``results.parquet`` of a sweep (a directory or the file) as a pandas DataFrame."""
    import pandas as pd

    p = Path(path)
    if p.is_dir():
        p = p / "results.parquet"
    from fastfault.errors import InputError

    if not p.is_file():
        raise InputError(f"{p}: no such results file (run `fastfault sweep` first)")
    return pd.read_parquet(p)


# --------------------------------------------------------------------------------------------------
# Provenance.
# --------------------------------------------------------------------------------------------------


def now() -> str:
    """The current UTC time in ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def versions() -> dict[str, str | None]:
    """Versions of the packages a result depends on."""
    from importlib import metadata

    import fastfault

    try:
        ff = metadata.version("fastfault")
    except metadata.PackageNotFoundError:
        ff = None
    out: dict[str, str | None] = {
        "python": platform.python_version(),
        "fastfault": getattr(fastfault, "__version__", None) or ff,
    }
    for pkg in ("numpy", "numba", "pyarrow", "pandas", "dask", "distributed"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def git_revision() -> dict[str, Any] | None:
    """``{"revision", "dirty"}`` of the source tree fastfault is imported from, if it is a git checkout."""
    root = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"revision": rev, "dirty": bool(status.strip())}


def host() -> dict[str, Any]:
    """Where the sweep ran (the driving process)."""
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": sys.executable,
    }


def timing_summary(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Compute-time statistics of runs (seconds): total, mean, max and the slowest runs."""
    recs = [r for r in records if isinstance(r.get("seconds"), int | float)]
    if not recs:
        return {"runs": 0}
    secs = [float(r["seconds"]) for r in recs]
    slow = sorted(recs, key=lambda r: -float(r["seconds"]))[:5]
    return {
        "runs": len(recs),
        "compute_seconds": round(math.fsum(secs), 3),
        "mean_seconds": round(math.fsum(secs) / len(secs), 4),
        "max_seconds": round(max(secs), 4),
        "slowest": [{k: r[k] for k in ("point", "replicate", "seconds")} for r in slow],
    }

"""The trace container shared by the whole project, and its ``.fftrace`` file format.

A :class:`Trace` is a sequence of page-granular memory accesses (virtual page number and
:class:`~fastfault.codes.AccessKind`), run-length encoded through a ``count`` column, plus
the table of :class:`Mapping` objects (VMAs) the accesses fall into and free-form metadata.

The on-disk format (``.fftrace``) is a zlib-compressed numpy ``.npz`` archive holding

``vpn_delta``
    int32 or int64, shape (n,): ``vpn[0]`` followed by ``np.diff(vpn)`` (deltas compress far
    better), stored as int32 when every value fits;
``kind``
    uint8, shape (n,);
``count``
    uint8, uint16 or uint32, shape (n,): the narrowest type holding every run length;
``header``
    uint8, shape (m,): UTF-8 JSON ``{"format": "fftrace", "version": 1, "mappings": [...],
    "meta": {...}}``.

No pickled objects are stored (files are loaded with ``allow_pickle=False``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import zipfile
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from fastfault.codes import AccessKind
from fastfault.errors import InputError

#: Base page size (bytes) and its shift; a trace's ``vpn`` is ``address >> PAGE_SHIFT``.
PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT

#: Version written into (and accepted from) the ``.fftrace`` header.
FORMAT_VERSION = 1

_PERMS_RE = re.compile(r"^[r-][w-][x-][ps]$")
_N_KINDS = len(AccessKind)


@dataclass(frozen=True)
class Mapping:
    """One virtual memory area (VMA) of the traced address space.

    Parameters
    ----------
    start : int
        First byte address, page aligned.
    end : int
        One past the last byte address (exclusive), page aligned, ``end > start``.
    offset : int
        Offset in bytes into the mapped file of ``start`` (0 for anonymous mappings), page aligned.
    perms : str
        Permissions in ``/proc/PID/maps`` form: four characters ``[r-][w-][x-][ps]``.
    path : str
        Backing file, or ``""``/a bracketed name (``"[heap]"``, ``"[stack]"``, ``"[anon]"``,
        ``"[vdso]"``...) for anonymous memory. Generated workloads use ``"synthetic:NAME"``.
    file_size : int
        Size of the backing file in bytes, or -1 when unknown (anonymous or missing file).

    Raises
    ------
    fastfault.errors.InputError
        If a field is out of range (unaligned, empty, malformed permissions).
    """

    start: int
    end: int
    offset: int = 0
    perms: str = "r--p"
    path: str = ""
    file_size: int = -1

    def __post_init__(self) -> None:
        for name in ("start", "end", "offset", "file_size"):
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or isinstance(value, bool):
                raise InputError(f"mapping {name} must be an integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.start < 0 or self.start % PAGE_SIZE or self.end % PAGE_SIZE:
            raise InputError(f"mapping {self.start:#x}-{self.end:#x} is not page aligned")
        if self.end <= self.start:
            raise InputError(f"mapping {self.start:#x}-{self.end:#x} is empty or reversed")
        if self.end > 1 << 64:
            raise InputError(f"mapping end {self.end:#x} exceeds the 64-bit address space")
        if self.offset < 0 or self.offset % PAGE_SIZE:
            raise InputError(f"mapping offset {self.offset:#x} is negative or not page aligned")
        if not isinstance(self.perms, str) or not _PERMS_RE.match(self.perms):
            raise InputError(f"mapping permissions {self.perms!r} are not of the form [r-][w-][x-][ps]")
        if not isinstance(self.path, str) or "\n" in self.path:
            raise InputError(f"mapping path {self.path!r} is not a one-line string")
        if self.file_size < -1:
            raise InputError(f"mapping file_size {self.file_size} must be >= -1")

    @property
    def is_file(self) -> bool:
        """True for file-backed mappings (a path that is neither empty nor ``[bracketed]``)."""
        return bool(self.path) and not self.path.startswith("[")

    @property
    def shared(self) -> bool:
        """True for ``MAP_SHARED`` mappings (``perms[3] == 's'``)."""
        return self.perms[3] == "s"

    @property
    def readable(self) -> bool:
        """True if the mapping is readable."""
        return self.perms[0] == "r"

    @property
    def writable(self) -> bool:
        """True if the mapping is writable."""
        return self.perms[1] == "w"

    @property
    def executable(self) -> bool:
        """True if the mapping is executable."""
        return self.perms[2] == "x"

    @property
    def npages(self) -> int:
        """Number of base pages spanned."""
        return (self.end - self.start) >> PAGE_SHIFT

    @property
    def pgoff(self) -> int:
        """File page offset of ``start`` (``offset >> 12``), like ``vma->vm_pgoff``."""
        return self.offset >> PAGE_SHIFT

    @property
    def start_vpn(self) -> int:
        """Virtual page number of ``start``."""
        return self.start >> PAGE_SHIFT

    @property
    def end_vpn(self) -> int:
        """Virtual page number of ``end`` (exclusive)."""
        return self.end >> PAGE_SHIFT

    @property
    def file_pages(self) -> int:
        """Number of pages of the backing file (``ceil(file_size / 4096)``), or -1 if unknown."""
        return -1 if self.file_size < 0 else (self.file_size + PAGE_SIZE - 1) >> PAGE_SHIFT

    def __str__(self) -> str:
        return f"{self.start:x}-{self.end:x} {self.perms} {self.offset:08x} {self.path}".rstrip()


class Trace(NamedTuple):
    """A page-granular access trace. Build it with :func:`make_trace`, which validates.

    Attributes
    ----------
    vpn : numpy.ndarray of int64, shape (n,)
        Virtual page number of each row (byte address ``>> 12``).
    kind : numpy.ndarray of uint8, shape (n,)
        :class:`~fastfault.codes.AccessKind` code of each row.
    count : numpy.ndarray of uint32, shape (n,)
        Number of consecutive identical accesses the row stands for (>= 1; all ones when the
        trace is not run-length collapsed).
    mappings : tuple of Mapping
        The VMAs, sorted by ``start`` and non-overlapping. Rows outside every mapping are
        allowed (see :func:`mapping_index`); the simulator treats them as anonymous memory.
    meta : dict
        JSON-serialisable provenance: ``command``, ``host``, ``date``, ``tool``, ...
    """

    vpn: np.ndarray
    kind: np.ndarray
    count: np.ndarray
    mappings: tuple[Mapping, ...]
    meta: dict[str, Any]

    @property
    def n_rows(self) -> int:
        """Number of rows (runs)."""
        return int(self.vpn.shape[0])

    @property
    def n_accesses(self) -> int:
        """Number of accesses the trace stands for (``count.sum()``)."""
        return int(self.count.sum(dtype=np.int64))


class FileAccesses(NamedTuple):
    """The rows of a trace that fall into one mapping, in file page coordinates.

    Attributes
    ----------
    pgoff : numpy.ndarray of int64, shape (k,)
        File page offset of each access (``vpn - mapping.start_vpn + mapping.pgoff``).
    kind : numpy.ndarray of uint8, shape (k,)
        Access kind of each row.
    count : numpy.ndarray of uint32, shape (k,)
        Run length of each row.
    rows : numpy.ndarray of int64, shape (k,)
        Index of each row in the trace (positions in time).
    """

    pgoff: np.ndarray
    kind: np.ndarray
    count: np.ndarray
    rows: np.ndarray


def _as_1d(name: str, values: Any, dtype: type) -> np.ndarray:
    """Convert ``values`` to a contiguous 1-D array of ``dtype`` without silent wrap-around."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise InputError(f"trace {name} must be 1-D, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        raise InputError(f"trace {name} must be integers, got dtype {arr.dtype}")
    if arr.dtype != dtype:
        info = np.iinfo(dtype)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            raise InputError(f"trace {name} has values outside the range of {np.dtype(dtype).name}")
        arr = arr.astype(dtype)
    return np.ascontiguousarray(arr)


def make_trace(
    vpn: Any,
    kind: Any,
    count: Any = None,
    mappings: Any = (),
    meta: dict[str, Any] | None = None,
) -> Trace:
    """Validate and assemble a :class:`Trace`.

    Parameters
    ----------
    vpn : array_like of int, shape (n,)
        Virtual page numbers, ``0 <= vpn < 2**52``.
    kind : array_like of int, shape (n,)
        Access kinds (:class:`~fastfault.codes.AccessKind` codes 0..2).
    count : array_like of int, shape (n,), optional
        Run lengths (>= 1, < 2**32). Defaults to all ones.
    mappings : iterable of Mapping, optional
        VMAs; sorted by ``start`` here. They must not overlap.
    meta : dict, optional
        Provenance metadata (must be JSON serialisable to be saved).

    Returns
    -------
    Trace
        With ``vpn`` int64, ``kind`` uint8, ``count`` uint32 contiguous arrays.

    Raises
    ------
    fastfault.errors.InputError
        On wrong shapes, dtypes or values, or overlapping mappings.
    """
    vpn_a = _as_1d("vpn", vpn, np.int64)
    kind_a = _as_1d("kind", kind, np.uint8)
    n = vpn_a.shape[0]
    count_a = np.ones(n, dtype=np.uint32) if count is None else _as_1d("count", count, np.uint32)
    if kind_a.shape[0] != n or count_a.shape[0] != n:
        raise InputError(f"trace arrays differ in length: vpn {n}, kind {kind_a.shape[0]}, count {count_a.shape[0]}")
    if n:
        if vpn_a.min() < 0 or vpn_a.max() >= 1 << (64 - PAGE_SHIFT):
            raise InputError("trace vpn outside [0, 2**52)")
        if kind_a.max() >= _N_KINDS:
            bad = int(kind_a[np.argmax(kind_a >= _N_KINDS)])
            raise InputError(f"trace kind {bad} is not an AccessKind (valid: 0..{_N_KINDS - 1})")
        if count_a.min() == 0:
            raise InputError(f"trace count must be >= 1 (row {int(np.argmin(count_a))} is 0)")
    maps = tuple(mappings)
    for m in maps:
        if not isinstance(m, Mapping):
            raise InputError(f"trace mappings must be Mapping objects, got {type(m).__name__}")
    maps = tuple(sorted(maps, key=lambda m: m.start))
    for a, b in zip(maps, maps[1:], strict=False):
        if b.start < a.end:
            raise InputError(f"trace mappings overlap: {a} and {b}")
    return Trace(vpn_a, kind_a, count_a, maps, dict(meta or {}))


def collapse_runs(trace: Trace) -> Trace:
    """Merge consecutive rows with equal ``(vpn, kind)``, summing ``count``.

    Parameters
    ----------
    trace : Trace
        Any trace (collapsed or not).

    Returns
    -------
    Trace
        The run-length collapsed trace; ``expand_runs(collapse_runs(t))`` equals
        ``expand_runs(t)``. Runs whose summed count would exceed ``2**32 - 1`` are split.
    """
    vpn, kind, count = trace.vpn, trace.kind, trace.count
    n = vpn.shape[0]
    if n == 0:
        return trace._replace(meta=dict(trace.meta))
    starts = np.empty(n, dtype=bool)
    starts[0] = True
    np.logical_or(vpn[1:] != vpn[:-1], kind[1:] != kind[:-1], out=starts[1:])
    idx = np.flatnonzero(starts)
    sums = np.add.reduceat(count.astype(np.uint64), idx)
    limit = np.uint64(np.iinfo(np.uint32).max)
    if sums.max() <= limit:
        return trace._replace(vpn=vpn[idx], kind=kind[idx], count=sums.astype(np.uint32), meta=dict(trace.meta))
    # Rare: split runs longer than uint32 into full pieces plus a remainder.
    pieces = (sums + limit - np.uint64(1)) // limit
    rep = np.repeat(np.arange(idx.shape[0]), pieces.astype(np.int64))
    out_count = np.full(rep.shape[0], limit, dtype=np.uint64)
    last = np.cumsum(pieces.astype(np.int64)) - 1
    out_count[last] = sums - (pieces - np.uint64(1)) * limit
    return trace._replace(
        vpn=vpn[idx][rep], kind=kind[idx][rep], count=out_count.astype(np.uint32), meta=dict(trace.meta)
    )


def expand_runs(trace: Trace) -> Trace:
    """Undo run-length encoding: one row per access, ``count`` all ones.

    Parameters
    ----------
    trace : Trace
        Any trace.

    Returns
    -------
    Trace
        ``n_accesses`` rows; ``vpn`` and ``kind`` repeated ``count`` times.
    """
    reps = trace.count.astype(np.int64)
    return trace._replace(
        vpn=np.repeat(trace.vpn, reps),
        kind=np.repeat(trace.kind, reps),
        count=np.ones(int(reps.sum()), dtype=np.uint32),
        meta=dict(trace.meta),
    )


def mapping_index(trace: Trace) -> np.ndarray:
    """Index into ``trace.mappings`` of the mapping containing each row.

    Parameters
    ----------
    trace : Trace
        A trace whose mappings are sorted and non-overlapping (guaranteed by :func:`make_trace`).

    Returns
    -------
    numpy.ndarray of int64, shape (n,)
        Mapping index per row, -1 for rows outside every mapping.
    """
    return _mapping_index(trace.vpn, trace.mappings)


def _mapping_index(vpn: np.ndarray, mappings: tuple[Mapping, ...]) -> np.ndarray:
    if not mappings:
        return np.full(vpn.shape[0], -1, dtype=np.int64)
    starts = np.array([m.start_vpn for m in mappings], dtype=np.int64)
    ends = np.array([m.end_vpn for m in mappings], dtype=np.int64)
    idx = np.searchsorted(starts, vpn, side="right").astype(np.int64) - 1
    safe = np.maximum(idx, 0)
    inside = (idx >= 0) & (vpn < ends[safe])
    return np.where(inside, idx, -1)


def file_pages(trace: Trace, mapping_index: int) -> FileAccesses:
    """The accesses that fall into one mapping, as file page offsets (for attribution reports).

    Parameters
    ----------
    trace : Trace
        The trace.
    mapping_index : int
        Index into ``trace.mappings``.

    Returns
    -------
    FileAccesses
        ``pgoff`` (int64), ``kind`` (uint8), ``count`` (uint32) and ``rows`` (int64), each shape (k,),
        for the k rows inside the mapping, in trace order. For anonymous mappings ``pgoff`` is
        the page index within the mapping.

    Raises
    ------
    fastfault.errors.InputError
        If ``mapping_index`` is out of range.
    """
    if not -len(trace.mappings) <= mapping_index < len(trace.mappings):
        raise InputError(f"mapping index {mapping_index} out of range (trace has {len(trace.mappings)})")
    m = trace.mappings[mapping_index]
    rows = np.flatnonzero((trace.vpn >= m.start_vpn) & (trace.vpn < m.end_vpn)).astype(np.int64)
    pgoff = trace.vpn[rows] - m.start_vpn + (m.pgoff if m.is_file else 0)
    return FileAccesses(pgoff, trace.kind[rows], trace.count[rows], rows)


# --------------------------------------------------------------------------------------- I/O


def atomic_write(path: str | os.PathLike[str], write: Any, *, suffix: str = ".tmp") -> Path:
    """Call ``write(tmp_path)`` on a temporary file next to ``path``, then rename it over ``path``.

    Parameters
    ----------
    path : path-like
        Destination.
    write : callable
        ``write(tmp_path: str) -> None`` creates the file content.
    suffix : str, optional
        Suffix of the temporary file (some writers, e.g. ``np.savez``, care about it).

    Returns
    -------
    pathlib.Path
        The destination path. On any exception the temporary file is removed and nothing is
        left at ``path`` (an existing file there is untouched).
    """
    dest = Path(path)
    if dest.is_dir():
        raise InputError(f"{dest}: is a directory")
    parent = dest.parent if str(dest.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{dest}: directory {parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix, dir=parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return dest


def _header(trace: Trace) -> bytes:
    try:
        text = json.dumps(
            {
                "format": "fftrace",
                "version": FORMAT_VERSION,
                "mappings": [asdict(m) for m in trace.mappings],
                "meta": trace.meta,
            },
            sort_keys=True,
        )
    except (TypeError, ValueError) as err:
        raise InputError(f"trace metadata is not JSON serialisable: {err}") from None
    return text.encode("utf-8")


def save_trace(path: str | os.PathLike[str], trace: Trace, *, compress: bool = True) -> Path:
    """Write ``trace`` to a ``.fftrace`` file atomically (temp file in the same dir + ``os.replace``).

    Parameters
    ----------
    path : path-like
        Destination (conventionally ending in ``.fftrace``).
    trace : Trace
        The trace (validated again here).
    compress : bool, optional
        zlib-compress the archive members (default True).

    Returns
    -------
    pathlib.Path
        The destination.
    """
    trace = make_trace(trace.vpn, trace.kind, trace.count, trace.mappings, trace.meta)
    vpn_delta = np.empty_like(trace.vpn)
    count = trace.count
    if trace.vpn.size:
        vpn_delta[0] = trace.vpn[0]
        np.subtract(trace.vpn[1:], trace.vpn[:-1], out=vpn_delta[1:])
        i32 = np.iinfo(np.int32)
        if i32.min <= vpn_delta.min() and vpn_delta.max() <= i32.max:
            vpn_delta = vpn_delta.astype(np.int32)
        top = int(count.max())
        count = count.astype(np.uint8 if top < 1 << 8 else np.uint16 if top < 1 << 16 else np.uint32)
    header = np.frombuffer(_header(trace), dtype=np.uint8)
    saver = np.savez_compressed if compress else np.savez

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            saver(fh, vpn_delta=vpn_delta, kind=trace.kind, count=count, header=header)

    return atomic_write(path, write)


def load_trace(path: str | os.PathLike[str]) -> Trace:
    """Read a ``.fftrace`` file written by :func:`save_trace`.

    Parameters
    ----------
    path : path-like
        The file.

    Returns
    -------
    Trace
        The validated trace.

    Raises
    ------
    fastfault.errors.InputError
        If the file is missing, truncated, not an ``.fftrace`` archive, or its content is invalid;
        the message names the file.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such trace file")
    try:
        with np.load(p, allow_pickle=False) as z:
            missing = {"vpn_delta", "kind", "count", "header"} - set(z.files)
            if missing:
                raise InputError(f"{p}: not an .fftrace file (missing arrays {sorted(missing)})")
            vpn_delta, kind, count, header = z["vpn_delta"], z["kind"], z["count"], z["header"]
        doc = json.loads(header.tobytes().decode("utf-8"))
        if not isinstance(doc, dict) or doc.get("format") != "fftrace":
            raise InputError(f"{p}: not an .fftrace file (bad header)")
        if doc.get("version") != FORMAT_VERSION:
            raise InputError(f"{p}: unsupported .fftrace version {doc.get('version')!r}")
        if vpn_delta.dtype not in (np.int32, np.int64) or vpn_delta.ndim != 1:
            raise InputError(f"{p}: vpn_delta must be 1-D int32 or int64")
        if count.dtype not in (np.uint8, np.uint16, np.uint32):
            raise InputError(f"{p}: count must be uint8, uint16 or uint32")
        maps = tuple(Mapping(**m) for m in doc["mappings"])
        meta = doc["meta"]
        if not isinstance(meta, dict):
            raise InputError(f"{p}: header meta is not an object")
        return make_trace(np.cumsum(vpn_delta, dtype=np.int64), kind, count, maps, meta)
    except InputError as err:
        msg = str(err)
        raise InputError(msg if msg.startswith(str(p)) else f"{p}: {msg}") from None
    except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile, zlib.error) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"{p}: not a valid .fftrace file ({reason})") from None

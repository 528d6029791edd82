"""Read and write live-kernel fault-path cases (``NAME.json`` + ``NAME.npz``, see ``kernel-cases/FORMAT.md``).

`load_case` validates everything a simulator relies on and raises `fastfault.errors.InputError` with a
one-line message naming the file and the field; `write_case` validates the same way and writes both files
atomically (temporary file in the same folder, then rename), the ``.npz`` first so that a ``.json`` never
names a missing array file.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fastfault.errors import InputError

__all__ = [
    "PHASE_KEYS",
    "JSON_KEYS",
    "Phase",
    "Case",
    "load_case",
    "load_cases",
    "iter_cases",
    "case_json_paths",
    "validate_case",
    "write_case",
]

#: Keys of a phase object, in FORMAT.md order.
PHASE_KEYS = ("minflt", "majflt", "Rss", "Referenced", "FilePmdMapped")
#: Required top-level JSON keys, in FORMAT.md order.
JSON_KEYS = (
    "layout",
    "pattern",
    "vma_start",
    "vma_aligned_2m",
    "npages",
    "vma_pages",
    "offset_pages",
    "private",
    "fault_around_bytes",
    "arch",
    "phase1",
    "phase2",
)
_PAGE = 4096
_PMD = 2 << 20


@dataclass(frozen=True)
class Phase:
    """What the kernel reported for one phase (FORMAT.md phase object; counts in 4 KiB pages).

    Attributes
    ----------
    minflt, majflt : int
        getrusage delta around the touch loop.
    rss, referenced, file_pmd_mapped : int
        The mapping's smaps ``Rss``, ``Referenced`` and ``FilePmdMapped``.
    """

    minflt: int
    majflt: int
    rss: int
    referenced: int
    file_pmd_mapped: int

    def to_json(self) -> dict[str, int]:
        """Return the phase as a JSON object with the FORMAT.md key names."""
        return dict(
            zip(
                PHASE_KEYS,
                (self.minflt, self.majflt, self.rss, self.referenced, self.file_pmd_mapped),
                strict=True,
            )
        )


@dataclass(frozen=True, eq=False)
class Case:
    """One validated kernel case. Arrays are read-only.

    Attributes
    ----------
    name : str
        File stem (``NAME`` of ``NAME.json``).
    path : pathlib.Path
        The ``.json`` file.
    layout, pattern : str
        Descriptive labels.
    npages : int
        File size in pages (``i_size = npages * 4096``).
    vma_start : int
        Mapping address in bytes; ``vma_aligned_2m`` says whether it is 2 MiB aligned.
    vma_pages, offset_pages : int
        Mapping length and file offset (``vm_pgoff``) in pages; ``offset_pages + vma_pages <= npages``.
    private : bool
        MAP_PRIVATE (True) or MAP_SHARED.
    fault_around_bytes : int
        The kernel's setting while recording.
    arch : str
        ``uname -m`` of the recording machine.
    phase1, phase2 : Phase
        Kernel observations per phase.
    folio_size : numpy.ndarray
        int64 ``(npages,)``; folio size in pages per file page, -1 if not cached.
    trace1, trace2 : numpy.ndarray
        int64 page indices relative to the mapping start.
    write1, write2 : numpy.ndarray or None
        bool, same shape as the traces; None in read-only cases.
    present1, present2 : numpy.ndarray
        bool ``(vma_pages,)``; page-table entry present after each phase.
    meta : dict
        The whole JSON object, including keys FORMAT.md does not define (``kernel``, ``recorder``, ...).
    """

    name: str
    path: Path
    layout: str
    pattern: str
    npages: int
    vma_start: int
    vma_aligned_2m: bool
    vma_pages: int
    offset_pages: int
    private: bool
    fault_around_bytes: int
    arch: str
    phase1: Phase
    phase2: Phase
    folio_size: np.ndarray = field(repr=False)
    trace1: np.ndarray = field(repr=False)
    trace2: np.ndarray = field(repr=False)
    write1: np.ndarray | None = field(repr=False)
    write2: np.ndarray | None = field(repr=False)
    present1: np.ndarray = field(repr=False)
    present2: np.ndarray = field(repr=False)
    meta: dict[str, Any] = field(repr=False)

    @property
    def has_writes(self) -> bool:
        """True when the case has ``write1``/``write2`` arrays."""
        return self.write1 is not None

    def phases(self) -> tuple[Phase, Phase]:
        """Return ``(phase1, phase2)``."""
        return self.phase1, self.phase2


def _fail(where: str | os.PathLike, what: str, why: str) -> InputError:
    msg = f"{where}: {what}: {why}"
    return InputError(" ".join(msg.split()))


def _int_field(meta: Mapping[str, Any], key: str, where: Path, *, minimum: int | None = None) -> int:
    v = meta.get(key)
    if isinstance(v, bool) or not isinstance(v, int):
        raise _fail(where, key, f"must be an integer, got {v!r}")
    if minimum is not None and v < minimum:
        raise _fail(where, key, f"must be >= {minimum}, got {v}")
    return v


def _bool_field(meta: Mapping[str, Any], key: str, where: Path) -> bool:
    v = meta.get(key)
    if not isinstance(v, bool):
        raise _fail(where, key, f"must be true or false, got {v!r}")
    return v


def _str_field(meta: Mapping[str, Any], key: str, where: Path) -> str:
    v = meta.get(key)
    if not isinstance(v, str):
        raise _fail(where, key, f"must be a string, got {v!r}")
    return v


def _phase(meta: Mapping[str, Any], key: str, where: Path) -> Phase:
    obj = meta.get(key)
    if not isinstance(obj, Mapping):
        raise _fail(where, key, f"must be an object with {', '.join(PHASE_KEYS)}")
    vals = [_int_field(obj, k, where, minimum=0) if k in obj else None for k in PHASE_KEYS]
    for k, v in zip(PHASE_KEYS, vals, strict=True):
        if v is None:
            raise _fail(where, f"{key}.{k}", "missing")
    return Phase(*vals)


def _check_meta(meta: Any, where: Path) -> dict[str, Any]:
    if not isinstance(meta, Mapping):
        raise _fail(where, "json", "top level must be an object")
    for k in JSON_KEYS:
        if k not in meta:
            raise _fail(where, k, "missing key")
    return dict(meta)


def _array(arrays: Mapping[str, np.ndarray], key: str, where: Path, dtype: type, shape: tuple[int, ...]):
    if key not in arrays:
        raise _fail(where, key, "missing array")
    a = np.asarray(arrays[key])
    if a.dtype != np.dtype(dtype):
        raise _fail(where, key, f"dtype must be {np.dtype(dtype).name}, got {a.dtype.name}")
    if a.ndim != len(shape) or any(s >= 0 and a.shape[i] != s for i, s in enumerate(shape)):
        want = "(" + ", ".join("n" if s < 0 else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
        raise _fail(where, key, f"shape must be {want}, got {a.shape}")
    return a


def validate_case(
    meta: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    where: str | os.PathLike = "<case>",
    npz_where: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Check a case's JSON object and arrays against FORMAT.md.

    Parameters
    ----------
    meta : Mapping
        The JSON object.
    arrays : Mapping[str, numpy.ndarray]
        The ``.npz`` arrays.
    where : str or os.PathLike
        Names the case in error messages about JSON fields (usually the ``.json`` path).
    npz_where : str or os.PathLike, optional
        Names the case in error messages about arrays (default: ``where`` with suffix ``.npz``).

    Returns
    -------
    dict
        Keyword arguments for `Case` (all fields except ``name`` and ``path``).

    Raises
    ------
    InputError
        One line: ``WHERE: FIELD: reason``.
    """
    where = Path(where)
    wz = Path(npz_where) if npz_where is not None else where.with_suffix(".npz")
    meta = _check_meta(meta, where)
    npages = _int_field(meta, "npages", where, minimum=1)
    vma_start = _int_field(meta, "vma_start", where, minimum=0)
    if vma_start % _PAGE:
        raise _fail(where, "vma_start", f"must be a multiple of 4096, got {vma_start}")
    aligned = _bool_field(meta, "vma_aligned_2m", where)
    if aligned != (vma_start % _PMD == 0):
        raise _fail(where, "vma_aligned_2m", f"is {str(aligned).lower()} but vma_start is {vma_start:#x}")
    vma_pages = _int_field(meta, "vma_pages", where, minimum=1)
    offset_pages = _int_field(meta, "offset_pages", where, minimum=0)
    if offset_pages + vma_pages > npages:
        raise _fail(
            where,
            "vma_pages",
            f"mapping [{offset_pages}, {offset_pages + vma_pages}) extends past the file ({npages} pages)",
        )
    kwargs: dict[str, Any] = {
        "layout": _str_field(meta, "layout", where),
        "pattern": _str_field(meta, "pattern", where),
        "npages": npages,
        "vma_start": vma_start,
        "vma_aligned_2m": aligned,
        "vma_pages": vma_pages,
        "offset_pages": offset_pages,
        "private": _bool_field(meta, "private", where),
        "fault_around_bytes": _int_field(meta, "fault_around_bytes", where, minimum=_PAGE),
        "arch": _str_field(meta, "arch", where),
        "phase1": _phase(meta, "phase1", where),
        "phase2": _phase(meta, "phase2", where),
    }

    fs = _array(arrays, "folio_size", wz, np.int64, (npages,))
    ok = (fs == -1) | ((fs > 0) & ((fs & (fs - 1)) == 0))
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise _fail(wz, "folio_size", f"page {i}: {int(fs[i])} is neither -1 nor a power of two")
    idx = np.arange(npages, dtype=np.int64)
    cached = fs > 0
    head = idx[cached] & ~(fs[cached] - 1)
    bad = fs[head] != fs[cached]
    if not bad.any():
        # every page of a folio must claim the same head: count the pages claiming each head
        count = np.bincount(head, minlength=npages)[head]
        bad = count != np.minimum(fs[head], npages - head)
    if bad.any():
        i = int(idx[cached][np.flatnonzero(bad)[0]])
        raise _fail(wz, "folio_size", f"page {i}: not part of a naturally aligned folio of {int(fs[i])} pages")
    kwargs["folio_size"] = fs
    for ph in (1, 2):
        t = _array(arrays, f"trace{ph}", wz, np.int64, (-1,))
        if len(t) and (t.min() < 0 or t.max() >= vma_pages):
            raise _fail(wz, f"trace{ph}", f"page indices must be in [0, {vma_pages}) (relative to the mapping)")
        kwargs[f"trace{ph}"] = t
        kwargs[f"present{ph}"] = _array(arrays, f"present{ph}", wz, np.bool_, (vma_pages,))
    has_w = ["write1" in arrays, "write2" in arrays]
    if any(has_w) and not all(has_w):
        raise _fail(wz, "write2" if has_w[0] else "write1", "missing array (write1 and write2 go together)")
    for ph in (1, 2):
        kwargs[f"write{ph}"] = (
            _array(arrays, f"write{ph}", wz, np.bool_, (len(kwargs[f"trace{ph}"]),)) if all(has_w) else None
        )
    for k in ("folio_size", "trace1", "trace2", "present1", "present2", "write1", "write2"):
        if kwargs[k] is not None:
            a = np.array(kwargs[k], copy=True)
            a.setflags(write=False)
            kwargs[k] = a
    kwargs["meta"] = meta
    return kwargs


def load_case(json_path: str | os.PathLike) -> Case:
    """Load and validate one case.

    Parameters
    ----------
    json_path : str or os.PathLike
        ``NAME.json``; the arrays are read from ``NAME.npz`` next to it.

    Returns
    -------
    Case

    Raises
    ------
    InputError
        Unreadable or malformed JSON/npz, a missing key or array, a wrong dtype or shape, an impossible value
        (negative ``npages``, a mapping past EOF, ...). The message is one line naming the file and the field.
    """
    path = Path(json_path)
    try:
        meta = json.loads(path.read_text())
    except OSError as e:
        raise _fail(path, "json", f"cannot read: {e.strerror or e}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _fail(path, "json", f"not valid JSON: {e}") from None
    meta = _check_meta(meta, path)
    npz = path.with_suffix(".npz")
    try:
        with np.load(npz, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise _fail(npz, "npz", "missing file") from None
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise _fail(npz, "npz", f"cannot read: {e}") from None
    kwargs = validate_case(meta, arrays, path, npz)
    return Case(name=path.stem, path=path, **kwargs)


def case_json_paths(folder: str | os.PathLike) -> list[Path]:
    """Return the sorted ``*.json`` case files of a folder (not recursive).

    Parameters
    ----------
    folder : str or os.PathLike

    Returns
    -------
    list of pathlib.Path
    """
    return sorted(Path(folder).glob("*.json"))


def load_cases(folder: str | os.PathLike) -> list[Case]:
    """Load every case of a folder, sorted by name.

    Parameters
    ----------
    folder : str or os.PathLike

    Returns
    -------
    list of Case

    Raises
    ------
    InputError
        The folder does not exist, or any case is invalid.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise _fail(folder, "folder", "does not exist")
    return [load_case(p) for p in case_json_paths(folder)]


def iter_cases(folder: str | os.PathLike) -> Iterator[Case]:
    """Yield the cases of a folder one at a time (sorted by name); see `load_cases`."""
    for p in case_json_paths(folder):
        yield load_case(p)


def _atomic_write(dest: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_case(folder: str | os.PathLike, name: str, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Path:
    """Validate a case and write ``NAME.npz`` then ``NAME.json`` atomically.

    Parameters
    ----------
    folder : str or os.PathLike
        Destination folder (created if missing).
    name : str
        File stem, e.g. ``"000_order0_seq_a"``.
    meta : Mapping
        The JSON object: the FORMAT.md keys (any extra keys are kept, after them).
    arrays : Mapping[str, numpy.ndarray]
        ``folio_size``, ``trace1``, ``trace2``, ``present1``, ``present2`` and optionally ``write1``,
        ``write2``. Other arrays are refused.

    Returns
    -------
    pathlib.Path
        The ``.json`` path.

    Raises
    ------
    InputError
        The case does not conform to FORMAT.md, or ``name`` is not a plain file stem.
    """
    folder = Path(folder)
    if not name or "/" in name or name.startswith(".") or name.endswith((".json", ".npz")):
        raise InputError(f"{folder}: name: {name!r} is not a plain case name")
    json_path = folder / f"{name}.json"
    allowed = {"folio_size", "trace1", "trace2", "present1", "present2", "write1", "write2"}
    extra = sorted(set(arrays) - allowed)
    if extra:
        raise _fail(json_path.with_suffix(".npz"), extra[0], "not a FORMAT.md array")
    validate_case(meta, arrays, json_path)
    ordered = {k: meta[k] for k in JSON_KEYS}
    ordered.update({k: v for k, v in meta.items() if k not in ordered})
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(arrays[k]) for k in sorted(arrays, key=_array_order)})
    _atomic_write(json_path.with_suffix(".npz"), buf.getvalue())
    _atomic_write(json_path, (json.dumps(ordered, indent=1) + "\n").encode())
    return json_path


def _array_order(key: str) -> int:
    order = ("folio_size", "trace1", "trace2", "write1", "write2", "present1", "present2")
    return order.index(key) if key in order else len(order)

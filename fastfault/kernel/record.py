"""Record live-kernel fault-path cases (``fastfault kernel record``) in the ``kernel-cases/FORMAT.md`` format.

For each case a file is written so that its page cache holds a chosen folio layout (read back with
`fastfault.kernel.layout.read_file_layout`), then a small C helper (``touch.c``, compiled at run time) maps
the file at a fixed address and touches two phases of pages, taking getrusage around each touch loop and
reading ``/proc/self/pagemap`` and ``/proc/self/smaps`` after it; between the phases it writes ``1`` to
``/proc/self/clear_refs`` and reads one byte per page of a 128 MiB buffer twice (TLB flush). Every case is
recorded twice; it is kept only when both recordings agree, neither had a major fault and the folio layout was
the same before, between and after them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fastfault.errors import InputError
from fastfault.kernel.cases import PHASE_KEYS, write_case
from fastfault.kernel.layout import (
    PAGE_SIZE,
    cached_pages,
    describe_layout,
    read_file_layout,
    require_layout_access,
)

__all__ = [
    "RECORDER",
    "VMA_BASE",
    "TLB_FLUSH_BYTES",
    "DEFAULT_FAULT_AROUND_BYTES",
    "LAYOUTS",
    "DEFAULT_LAYOUTS",
    "PATTERNS",
    "ACCESSES",
    "MappingSpec",
    "CaseSpec",
    "RecordReport",
    "plan_cases",
    "public_like_specs",
    "extended_specs",
    "quick_specs",
    "layout_plan",
    "make_traces",
    "read_fault_around_bytes",
    "build_touch_helper",
    "record_cases",
]

RECORDER = "fastfault kernel record"
#: Where the helper maps the file (2 MiB aligned); unaligned mappings start one page later.
VMA_BASE = 0x600000000000
#: Private anonymous buffer read (one byte per page, twice) between the phases to flush the TLB.
TLB_FLUSH_BYTES = 128 << 20
DEFAULT_FAULT_AROUND_BYTES = 65536
FAULT_AROUND_PATH = "/sys/kernel/debug/fault_around_bytes"
#: Every byte of a recorded file; stores write this value back, so the file content never changes.
FILL_BYTE = 0x5A
_PMD_PAGES = 512
_MAX_FOLIO = 512

#: Layout names: ``order0`` (fadvise + random 4 KiB preads), ``uniformN`` (N-page folios, N a power of two up
#: to 512, written in N-page aligned chunks), ``mixed`` (folios of 1, 4, 16, 64 and 512 pages, like the public
#: set), ``mixedall`` (every order from 0 to 9).
LAYOUTS = ("order0", *(f"uniform{1 << k}" for k in range(1, 10)), "mixed", "mixedall")
DEFAULT_LAYOUTS = ("order0", "uniform4", "uniform16", "uniform512", "mixed")
PATTERNS = (
    "seq",
    "reverse",
    "stride16",
    "stride16_off8",
    "stride17",
    "stride40",
    "rand_all",
    "rand_sub",
    "zipf",
)
#: ``r`` loads only; ``w`` stores only; ``rw`` a seeded 50/50 mix; ``r2w`` loads in phase 1 and stores in
#: phase 2.
ACCESSES = ("r", "w", "rw", "r2w")


def _log_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class MappingSpec:
    """How the file is mapped and touched.

    Attributes
    ----------
    private : bool
        MAP_PRIVATE (True) or MAP_SHARED.
    access : str
        One of `ACCESSES`. Mappings with stores are ``PROT_READ|PROT_WRITE``, the others ``PROT_READ``.
    aligned : bool
        Map at `VMA_BASE` (2 MiB aligned) or one page after it.
    offset_pages : int
        File offset of the mapping in pages (``vm_pgoff``).
    vma_pages : int or None
        Mapping length in pages; None maps to the end of the file. Mappings past EOF are refused.

    Notes
    -----
    The text form (`tag`, `parse`) is ``shared`` or ``private`` followed by ``+`` options: ``+w``, ``+rw``,
    ``+r2w`` (access), ``+u`` (unaligned), ``+off=N``, ``+len=N``; e.g. ``private+rw+u+off=1+len=4000``.
    """

    private: bool = False
    access: str = "r"
    aligned: bool = True
    offset_pages: int = 0
    vma_pages: int | None = None

    def __post_init__(self) -> None:
        if self.access not in ACCESSES:
            raise InputError(f"mapping: access: {self.access!r} is not one of {', '.join(ACCESSES)}")
        if self.offset_pages < 0:
            raise InputError(f"mapping: off: must be >= 0, got {self.offset_pages}")
        if self.vma_pages is not None and self.vma_pages < 1:
            raise InputError(f"mapping: len: must be >= 1, got {self.vma_pages}")

    @property
    def has_stores(self) -> bool:
        """True when some touch is a store (the case gets ``write1``/``write2`` arrays)."""
        return self.access != "r"

    def length(self, npages: int) -> int:
        """Mapping length in pages for a file of ``npages`` pages.

        Raises
        ------
        InputError
            The mapping would extend past the end of the file (touching there is SIGBUS) or be empty.
        """
        n = self.vma_pages if self.vma_pages is not None else npages - self.offset_pages
        if n < 1 or self.offset_pages + n > npages:
            raise InputError(
                f"mapping {self.tag()}: [{self.offset_pages}, {self.offset_pages + n}) does not fit in a "
                f"file of {npages} pages (mappings past EOF are not recorded)"
            )
        return n

    def vma_start(self) -> int:
        """Virtual address of the mapping in bytes."""
        return VMA_BASE + (0 if self.aligned else PAGE_SIZE)

    def tag(self) -> str:
        """Text form, see `parse`."""
        parts = ["private" if self.private else "shared"]
        if self.access != "r":
            parts.append(self.access)
        if not self.aligned:
            parts.append("u")
        if self.offset_pages:
            parts.append(f"off={self.offset_pages}")
        if self.vma_pages is not None:
            parts.append(f"len={self.vma_pages}")
        return "+".join(parts)

    @classmethod
    def parse(cls, text: str) -> MappingSpec:
        """Parse the text form (see the class notes).

        Raises
        ------
        InputError
            Unknown words or malformed numbers.
        """
        words = text.strip().split("+")
        if words[0] not in ("shared", "private"):
            raise InputError(f"mapping {text!r}: must start with 'shared' or 'private'")
        kw: dict[str, Any] = {"private": words[0] == "private"}
        for w in words[1:]:
            if w in ACCESSES:
                kw["access"] = w
            elif w == "u":
                kw["aligned"] = False
            elif w.startswith(("off=", "len=")):
                try:
                    v = int(w[4:])
                except ValueError:
                    raise InputError(f"mapping {text!r}: {w!r} is not a number") from None
                kw["offset_pages" if w.startswith("off=") else "vma_pages"] = v
            else:
                raise InputError(f"mapping {text!r}: unknown option {w!r} (w, rw, r2w, u, off=N, len=N)")
        return cls(**kw)

    def suffix(self) -> str:
        """Part of a case name: ``a``/``u`` alone for a shared read-only whole-file mapping (as the public
        set), else e.g. ``prv_w_off100_len4000_u``."""
        if not self.private and self.access == "r" and not self.offset_pages and self.vma_pages is None:
            return "a" if self.aligned else "u"
        parts = ["prv" if self.private else "shr", self.access]
        if self.offset_pages:
            parts.append(f"off{self.offset_pages}")
        if self.vma_pages is not None:
            parts.append(f"len{self.vma_pages}")
        parts.append("a" if self.aligned else "u")
        return "_".join(parts)


@dataclass(frozen=True)
class CaseSpec:
    """One case to record.

    Attributes
    ----------
    layout : str
        One of `LAYOUTS`.
    pattern : str
        One of `PATTERNS` (phase 1; phase 2 is always a random 10 % subset of the mapping's pages).
    mapping : MappingSpec
    npages : int
        File size in pages.
    """

    layout: str
    pattern: str
    mapping: MappingSpec = field(default_factory=MappingSpec)
    npages: int = 8192

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise InputError(f"layout: {self.layout!r} is not one of {', '.join(LAYOUTS)}")
        if self.pattern not in PATTERNS:
            raise InputError(f"pattern: {self.pattern!r} is not one of {', '.join(PATTERNS)}")
        if self.npages < 1:
            raise InputError(f"npages: must be >= 1, got {self.npages}")
        self.mapping.length(self.npages)

    def label(self) -> str:
        """Case name without the index, e.g. ``uniform16_seq_prv_w_a``; ``_nN`` is added when ``npages`` is
        not 8192."""
        s = f"{self.layout}_{self.pattern}_{self.mapping.suffix()}"
        return s if self.npages == 8192 else f"{s}_n{self.npages}"


def plan_cases(
    layouts: Iterable[str] = DEFAULT_LAYOUTS,
    patterns: Iterable[str] = PATTERNS,
    mappings: Iterable[str | MappingSpec] = ("shared",),
    npages: int = 8192,
) -> list[CaseSpec]:
    """Cross product of layouts, patterns and mappings.

    Parameters
    ----------
    layouts, patterns : iterable of str
        Names from `LAYOUTS` and `PATTERNS`.
    mappings : iterable of str or MappingSpec
        Mapping specs or their text form (`MappingSpec.parse`).
    npages : int
        File size in pages.

    Returns
    -------
    list of CaseSpec
        Ordered layout-major, then pattern, then mapping.

    Raises
    ------
    InputError
        Unknown names or impossible mappings.
    """
    maps = [m if isinstance(m, MappingSpec) else MappingSpec.parse(m) for m in mappings]
    return [CaseSpec(lay, pat, m, npages) for lay in layouts for pat in patterns for m in maps]


def public_like_specs(npages: int = 8192) -> list[CaseSpec]:
    """The plan of the public set ``x86_64-6.18-a``: shared read-only whole-file mappings, every pattern, on
    order0/uniform4/uniform16 (aligned) and uniform512/mixed (aligned and unaligned): 63 cases."""
    specs = plan_cases(("order0", "uniform4", "uniform16"), PATTERNS, ("shared",), npages)
    for lay in ("uniform512", "mixed"):
        specs += plan_cases((lay,), PATTERNS, ("shared", "shared+u"), npages)
    return specs


def extended_specs(npages: int = 8192) -> list[CaseSpec]:
    """Cases the public set lacks (the plan of ``x86_64-6.18-b``), about 75 of them.

    Stores on shared and private mappings (``w``, ``rw``, ``r2w``) on
    order0/uniform4/uniform16/uniform512/mixed; mappings at file offsets and shorter than the file (including
    a PMD-size-folio file with short and offset mappings, and an unaligned mapping whose offset makes it
    PMD-mappable again); unaligned mappings of small folios; every other folio order (2 to 256 pages) and the
    all-orders ``mixedall`` layout; files whose size is not a multiple of 512 pages.
    """
    n = npages
    s: list[CaseSpec] = []

    def add(layout: str, pattern: str, mapping: str, size: int = n) -> None:
        s.append(CaseSpec(layout, pattern, MappingSpec.parse(mapping), size))

    for lay in ("order0", "uniform4", "uniform16", "uniform512", "mixed"):
        for kind in ("shared", "private"):
            add(lay, "seq", f"{kind}+w")
            add(lay, "rand_all", f"{kind}+rw")
            add(lay, "stride17", f"{kind}+r2w")
    q = n // 8  # 1024 for the default size
    add("uniform512", "seq", f"shared+len={q - 24}")
    add("uniform512", "rand_all", f"shared+len={q + q // 2}")
    add("uniform512", "seq", f"shared+off=512+len={2 * q}")
    add("uniform512", "stride17", f"shared+off=100+len={3 * q}")
    add("uniform512", "seq", "shared+u+off=1")
    add("uniform512", "rand_sub", f"private+len={q - 24}")
    add("uniform512", "zipf", f"shared+r2w+len={q + 100}")
    add("mixed", "stride16", f"shared+off=100+len={4 * q}")
    add("mixed", "rand_sub", f"shared+u+off=512+len={4 * q}")
    add("mixed", "seq", f"private+rw+off=7+len={2 * q}")
    add("order0", "seq", f"shared+off=8+len={q - 24}")
    add("uniform16", "rand_all", f"shared+off=24+len={5 * q}")
    add("uniform4", "reverse", f"shared+off=3+len={q - 247}")
    for lay in ("order0", "uniform4", "uniform16"):
        add(lay, "seq", "shared+u")
        add(lay, "stride16", "shared+u")
        add(lay, "rand_sub", "shared+u")
    for k in (1, 3, 5, 6, 7, 8):
        add(f"uniform{1 << k}", "seq", "shared")
        add(f"uniform{1 << k}", "rand_sub", "shared")
    for pat in ("seq", "stride17", "rand_sub", "zipf"):
        add("mixedall", pat, "shared")
        add("mixedall", pat, "shared+u")
    odd = n - n // 8 + 37  # not a multiple of 512: the last folios are smaller
    add("uniform512", "seq", "shared", odd)
    add("uniform512", "rand_all", "shared", odd)
    add("uniform16", "reverse", "shared", odd)
    add("mixed", "stride17", "private+w", odd)
    return s


def quick_specs(npages: int = 2048) -> list[CaseSpec]:
    """A small set for tests (6 cases of 8 MiB files): order-0 read-only, private stores, shared stores on
    PMD-size folios, an offset short mapping, an unaligned mapping, a PMD-size-folio file with a short
    mapping."""
    s = [
        ("order0", "seq", "shared"),
        ("uniform16", "rand_sub", "private+w"),
        ("uniform512", "stride17", "shared+r2w"),
        ("mixed", "stride16", f"shared+off=100+len={npages // 2}"),
        ("uniform4", "rand_all", "shared+u"),
        ("uniform512", "seq", f"shared+len={npages // 2 - 24}"),
    ]
    return [CaseSpec(lay, pat, MappingSpec.parse(m), npages) for lay, pat, m in s]


# --------------------------------------------------------------------------------------------------- layouts


def _chunk_sizes(npages: int, size: int) -> np.ndarray:
    """Folio sizes of a file cut into naturally aligned chunks of ``size`` pages (smaller ones at the end)."""
    out = np.empty(npages, dtype=np.int64)
    pos = 0
    while pos < npages:
        s = size
        while s > 1 and (pos % s or pos + s > npages):
            s //= 2
        out[pos : pos + s] = s
        pos += s
    return out


def _split(out: np.ndarray, pos: int, size: int, rng: np.random.Generator, keep: dict[int, float], child: dict):
    if size == 1 or rng.random() < keep[size]:
        out[pos : pos + size] = size
        return
    c = child[size]
    for p in range(pos, pos + size, c):
        _split(out, p, c, rng, keep, child)


def layout_plan(layout: str, npages: int, seed: int = 0) -> np.ndarray:
    """The folio layout a layout name asks for.

    Parameters
    ----------
    layout : str
        One of `LAYOUTS`.
    npages : int
        File size in pages.
    seed : int
        Seeds the random layouts (``mixed``, ``mixedall``); the same seed gives the same layout for every
        case.

    Returns
    -------
    numpy.ndarray
        int64 ``(npages,)`` folio sizes (naturally aligned; where ``npages`` is not a multiple of the folio
        size the end of the file gets smaller folios).
    """
    if layout == "order0":
        return np.ones(npages, dtype=np.int64)
    if layout.startswith("uniform"):
        return _chunk_sizes(npages, int(layout[len("uniform") :]))
    rng = np.random.default_rng([seed, zlib.crc32(layout.encode())])
    if layout == "mixed":
        keep = {512: 0.2, 64: 0.25, 16: 0.5, 4: 0.6}
        child = {512: 64, 64: 16, 16: 4, 4: 1}
    elif layout == "mixedall":
        keep = {1 << k: 0.3 for k in range(1, 10)}
        child = {1 << k: 1 << (k - 1) for k in range(1, 10)}
    else:
        raise InputError(f"layout: {layout!r} is not one of {', '.join(LAYOUTS)}")
    base = _chunk_sizes(npages, _MAX_FOLIO)
    out = np.empty(npages, dtype=np.int64)
    pos = 0
    while pos < npages:
        size = int(base[pos])
        if size in keep:
            _split(out, pos, size, rng, keep, child)
        else:  # a short tail chunk: keep it whole
            out[pos : pos + size] = size
        pos += size
    return out


def _write_all(fd: int, data: memoryview, offset: int) -> None:
    while len(data):
        n = os.pwrite(fd, data, offset)
        data = data[n:]
        offset += n


def _make_layout_file(path: Path, layout: str, plan: np.ndarray, rng: np.random.Generator) -> None:
    """Create ``path`` so that its page cache holds ``plan``; the cache is clean (fsync) when this returns."""
    npages = len(plan)
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    buf = memoryview(bytes([FILL_BYTE]) * (_MAX_FOLIO * PAGE_SIZE))
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    try:
        if layout == "order0":
            for pos in range(0, npages, _MAX_FOLIO):
                n = min(_MAX_FOLIO, npages - pos)
                _write_all(fd, buf[: n * PAGE_SIZE], pos * PAGE_SIZE)
        else:
            pos = 0
            while pos < npages:
                n = int(plan[pos])
                _write_all(fd, buf[: n * PAGE_SIZE], pos * PAGE_SIZE)
                pos += n
        os.fsync(fd)
    finally:
        os.close(fd)
    if layout != "order0":
        return
    # order-0 folios: drop the file from the cache, read every page back with 4 KiB preads in random order
    # under POSIX_FADV_RANDOM (no readahead, so every read allocates one order-0 folio).
    fd = os.open(path, os.O_RDONLY)
    try:
        for _ in range(5):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            if not cached_pages(path).any():
                break
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        for p in rng.permutation(npages).tolist():
            os.pread(fd, PAGE_SIZE, p * PAGE_SIZE)
    finally:
        os.close(fd)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------------- traces


def make_traces(
    pattern: str, access: str, vma_pages: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Touch sequences of the two phases, as the public set draws them.

    Parameters
    ----------
    pattern : str
        Phase-1 pattern (`PATTERNS`): ``seq``/``reverse`` every page; ``stride16``, ``stride16_off8`` (from
        page 8), ``stride17``, ``stride40`` (from page 3); ``rand_all`` a permutation; ``rand_sub`` 5 % of the
        pages without repetition; ``zipf`` ``vma_pages // 4`` draws of ``min(zipf(1.3) - 1, vma_pages - 1)``.
    access : str
        One of `ACCESSES`, for the write arrays.
    vma_pages : int
        Mapping length; page indices are relative to the mapping start.
    rng : numpy.random.Generator
        Drawn in this order: pattern, phase 2, write flags.

    Returns
    -------
    trace1, trace2 : numpy.ndarray
        int64. Phase 2 is ``vma_pages // 10`` distinct random pages (at least 1).
    write1, write2 : numpy.ndarray or None
        bool, None for ``access == "r"``.
    """
    n = vma_pages
    if pattern == "seq":
        t1 = np.arange(n)
    elif pattern == "reverse":
        t1 = np.arange(n)[::-1]
    elif pattern == "stride16":
        t1 = np.arange(0, n, 16)
    elif pattern == "stride16_off8":
        t1 = np.arange(min(8, n - 1), n, 16)
    elif pattern == "stride17":
        t1 = np.arange(0, n, 17)
    elif pattern == "stride40":
        t1 = np.arange(min(3, n - 1), n, 40)
    elif pattern == "rand_all":
        t1 = rng.permutation(n)
    elif pattern == "rand_sub":
        t1 = rng.choice(n, max(1, n // 20), replace=False)
    elif pattern == "zipf":
        t1 = np.minimum(rng.zipf(1.3, max(1, n // 4)) - 1, n - 1)
    else:
        raise InputError(f"pattern: {pattern!r} is not one of {', '.join(PATTERNS)}")
    t2 = rng.choice(n, max(1, n // 10), replace=False)
    t1 = np.ascontiguousarray(t1, dtype=np.int64)
    t2 = np.ascontiguousarray(t2, dtype=np.int64)
    if access == "r":
        return t1, t2, None, None
    if access == "w":
        return t1, t2, np.ones(len(t1), bool), np.ones(len(t2), bool)
    if access == "rw":
        return t1, t2, rng.random(len(t1)) < 0.5, rng.random(len(t2)) < 0.5
    if access == "r2w":
        return t1, t2, np.zeros(len(t1), bool), np.ones(len(t2), bool)
    raise InputError(f"access: {access!r} is not one of {', '.join(ACCESSES)}")


# --------------------------------------------------------------------------------------------------- helper


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fastfault"


def build_touch_helper(cache_dir: str | os.PathLike | None = None) -> Path:
    """Compile ``touch.c`` (once per source version) and return the executable.

    Parameters
    ----------
    cache_dir : str or os.PathLike, optional
        Where to keep the binary; default ``$XDG_CACHE_HOME/fastfault`` or ``~/.cache/fastfault``.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    InputError
        No C compiler (``$CC``, ``gcc`` or ``cc``), or compilation failed.
    """
    src = Path(__file__).with_name("touch.c")
    code = src.read_bytes()
    key = hashlib.sha256(code).hexdigest()[:16]
    out_dir = Path(cache_dir) if cache_dir is not None else _cache_dir()
    exe = out_dir / f"touch-{key}"
    if exe.is_file() and os.access(exe, os.X_OK):
        return exe
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if not cc:
        raise InputError("kernel record: needs a C compiler (gcc) to build the touch helper; none found on PATH")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        if not os.access(out_dir, os.W_OK):
            raise PermissionError(out_dir)
    except OSError:  # unwritable cache: build into the temp dir instead
        out_dir = Path(tempfile.gettempdir()) / f"fastfault-cache-{os.geteuid()}"
        out_dir.mkdir(parents=True, exist_ok=True)
        exe = out_dir / f"touch-{key}"
    tmp = out_dir / f".touch-{key}.{os.getpid()}.tmp"
    errors = []
    for flags in (["-static"], ["-Wl,-z,now"]):
        cmd = [cc, "-O2", "-Wall", *flags, "-o", str(tmp), str(src)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode == 0:
            os.replace(tmp, exe)
            return exe
        lines = r.stderr.strip().splitlines()
        errors.append(next((ln.strip() for ln in lines if "error" in ln), lines[-1].strip() if lines else "?"))
    raise InputError(f"kernel record: compiling {src.name} with {cc} failed: {errors[-1]}")


@dataclass
class _Observation:
    phases: list[dict[str, int]]
    present: list[np.ndarray]
    details: list[dict[str, int]]
    mlocked: bool


def _smaps_block(text: str, vma_start: int) -> dict[str, int]:
    """kB fields of the smaps entry whose range starts at ``vma_start``."""
    head = f"{vma_start:x}-"
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(head)), None)
    if start is None:
        raise RuntimeError(f"no smaps entry at {vma_start:#x}")
    fields: dict[str, int] = {}
    for line in lines[start + 1 :]:
        key, sep, rest = line.partition(":")
        if not sep or " " in key:  # next mapping's header line
            if "-" in line.split(" ", 1)[0]:
                break
            continue
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB":
            fields[key] = int(parts[0])
    return fields


def _kb_to_pages(kb: int, key: str) -> int:
    if kb % (PAGE_SIZE // 1024):
        raise RuntimeError(f"smaps {key} = {kb} kB is not a whole number of pages")
    return kb // (PAGE_SIZE // 1024)


_DETAIL_KEYS = (
    "Anonymous",
    "Shared_Clean",
    "Shared_Dirty",
    "Private_Clean",
    "Private_Dirty",
    "AnonHugePages",
    "Locked",
)


def _run_helper(
    exe: Path,
    work: Path,
    file: Path,
    vma_start: int,
    vma_pages: int,
    offset_pages: int,
    mapping: MappingSpec,
    traces: tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None],
) -> _Observation:
    t1, t2, w1, w2 = traces
    w1 = np.zeros(len(t1), bool) if w1 is None else w1
    w2 = np.zeros(len(t2), bool) if w2 is None else w2
    path_b = os.fsencode(file)
    flags = (1 if mapping.private else 0) | (2 if mapping.has_stores else 0)
    hdr = struct.pack(
        "<8s9Q",
        b"FFTOUCH1",
        vma_start,
        vma_pages,
        offset_pages,
        flags,
        len(t1),
        len(t2),
        FILL_BYTE,
        TLB_FLUSH_BYTES,
        len(path_b),
    )
    pad = b"\0" * (-len(path_b) % 8)
    inp = work / "touch.in"
    outp = work / "touch.out"
    inp.write_bytes(
        hdr
        + path_b
        + pad
        + t1.astype("<i8").tobytes()
        + t2.astype("<i8").tobytes()
        + w1.astype(np.uint8).tobytes()
        + w2.astype(np.uint8).tobytes()
    )
    r = subprocess.run([str(exe), str(inp), str(outp)], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        msg = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
        raise RuntimeError(f"touch helper failed: {msg}")
    raw = outp.read_bytes()
    if raw[:8] != b"FFTOUT01":
        raise RuntimeError("touch helper wrote a malformed output file")
    mlocked = bool(struct.unpack_from("<Q", raw, 8)[0])
    pos = 16
    phases, present, details = [], [], []
    for _ in range(2):
        minflt, majflt, slen = struct.unpack_from("<3q", raw, pos)
        pos += 24
        pm = np.frombuffer(raw, dtype="<u8", count=vma_pages, offset=pos)
        pos += 8 * vma_pages
        smaps = raw[pos : pos + slen].decode("utf-8", "replace")
        pos += (slen + 7) & ~7
        kb = _smaps_block(smaps, vma_start)
        pres = (pm >> np.uint64(63)) & np.uint64(1) == 1
        file_bit = (pm >> np.uint64(61)) & np.uint64(1) == 1
        phases.append(
            {
                "minflt": int(minflt),
                "majflt": int(majflt),
                "Rss": _kb_to_pages(kb["Rss"], "Rss"),
                "Referenced": _kb_to_pages(kb["Referenced"], "Referenced"),
                "FilePmdMapped": _kb_to_pages(kb.get("FilePmdMapped", 0), "FilePmdMapped"),
            }
        )
        detail = {k: _kb_to_pages(kb[k], k) for k in _DETAIL_KEYS if k in kb}
        detail["pagemap_anon"] = int((pres & ~file_bit).sum())
        details.append(detail)
        present.append(pres.copy())
    return _Observation(phases, present, details, mlocked)


def _diff(a: _Observation, b: _Observation) -> str | None:
    for ph in range(2):
        for k in PHASE_KEYS:
            if a.phases[ph][k] != b.phases[ph][k]:
                return f"recordings differ: phase{ph + 1} {k} {a.phases[ph][k]} vs {b.phases[ph][k]}"
        if not np.array_equal(a.present[ph], b.present[ph]):
            n = int((a.present[ph] != b.present[ph]).sum())
            return f"recordings differ: present{ph + 1} differs on {n} pages"
    return None


# --------------------------------------------------------------------------------------------------- report


@dataclass
class RecordReport:
    """What `record_cases` did.

    Attributes
    ----------
    out_dir : pathlib.Path
    written : list of pathlib.Path
        ``.json`` files written, in plan order.
    dropped : list of (str, str)
        ``(case name, reason)`` for every planned case not written.
    notes : list of str
        What could not be done as asked and what was assumed (e.g. the fault_around_bytes default).
    kernel : str
        ``uname -r``.
    fault_around_bytes : int
    fault_around_bytes_source : str
        ``"debugfs"`` or ``"default"``.
    """

    out_dir: Path
    written: list[Path] = field(default_factory=list)
    dropped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    kernel: str = ""
    fault_around_bytes: int = DEFAULT_FAULT_AROUND_BYTES
    fault_around_bytes_source: str = "default"

    def summary(self) -> str:
        """Multi-line human summary: counts, then each dropped case, then the notes."""
        lines = [f"{len(self.written)} cases written to {self.out_dir}, {len(self.dropped)} dropped"]
        lines += [f"dropped {name}: {why}" for name, why in self.dropped]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def read_fault_around_bytes() -> tuple[int, str]:
    """The kernel's ``fault_around_bytes``, or the default when debugfs cannot be read.

    Returns
    -------
    (int, str)
        The value and its source, ``"debugfs"`` or ``"default"``. Debugfs is only read, never mounted.
    """
    try:
        with open(FAULT_AROUND_PATH) as f:
            return int(f.read().strip()), "debugfs"
    except (OSError, ValueError):
        return DEFAULT_FAULT_AROUND_BYTES, "default"


def _fs_type(path: Path) -> str:
    best, fstype = "", "unknown"
    p = str(path.resolve())
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                parts = line.split()
                mnt = parts[4]
                t = parts[parts.index("-") + 1]
                if (p == mnt or p.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                    best, fstype = mnt, t
    except (OSError, ValueError, IndexError):
        pass
    return fstype


def _read_text(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return "unknown"


def _damon_notes() -> list[str]:
    """Describe running DAMON monitors: they clear accessed bits (setting the folio's idle-page "young" flag,
    which smaps counts as Referenced for every mapped page of the folio) and may page out cold folios."""
    notes = []
    for state in sorted(Path("/sys/kernel/mm/damon/admin/kdamonds").glob("*/state")):
        if _read_text(str(state)) != "on":
            continue
        ops = sorted({_read_text(str(p)) for p in state.parent.glob("contexts/*/operations")})
        acts = sorted({_read_text(str(p)) for p in state.parent.glob("contexts/*/schemes/*/action")})
        notes.append(
            f"DAMON kdamond {state.parent.name} is running (operations {', '.join(ops) or '?'}, "
            f"scheme actions {', '.join(acts) or 'none'}): it clears accessed bits behind the recorder's "
            "back (inflating a phase's Referenced for whole large folios) and may evict cold page-cache "
            "folios; such recordings disagree or change the layout and are retried or dropped"
        )
    return notes


# --------------------------------------------------------------------------------------------------- record


def _probe_large_folios(work: Path) -> bool:
    probe = work / "probe"
    _make_layout_file(probe, "uniform16", np.full(16, 16, np.int64), np.random.default_rng(0))
    try:
        return bool((read_file_layout(probe) > 1).any())
    finally:
        probe.unlink()


def record_cases(
    out_dir: str | os.PathLike,
    seed: int = 0,
    layouts: Sequence[str] = DEFAULT_LAYOUTS,
    patterns: Sequence[str] = PATTERNS,
    mappings: Sequence[str | MappingSpec] = ("shared",),
    npages: int = 8192,
    *,
    specs: Sequence[CaseSpec] | None = None,
    quick: bool = False,
    work_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    attempts: int = 2,
    log: Callable[[str], None] | None = _log_stderr,
) -> RecordReport:
    """Record fault-path cases on the running kernel into ``out_dir`` (FORMAT.md format).

    Parameters
    ----------
    out_dir : str or os.PathLike
        Destination folder (created). Cases are named ``NNN_LAYOUT_PATTERN_SUFFIX`` (see `CaseSpec.label`),
        ``NNN`` the index in the plan (so dropped cases leave gaps).
    seed : int
        Seeds the random patterns, write mixes and random layouts (numpy ``default_rng([seed, ...])`` per
        case, so a case's traces do not depend on which other cases are recorded).
    layouts, patterns : sequence of str
        Cross product recorded when ``specs`` is None and ``quick`` is False (names from `LAYOUTS`,
        `PATTERNS`).
    mappings : sequence of str or MappingSpec
        Mappings of the cross product, e.g. ``("shared", "private+w", "shared+u+off=1+len=1000")``.
    npages : int
        File size in pages for the cross product (default 8192 = 32 MiB, as the public set).
    specs : sequence of CaseSpec, optional
        An explicit plan (e.g. `extended_specs`, `public_like_specs`); overrides the cross product.
    quick : bool
        Record `quick_specs` (6 small cases) unless ``specs`` is given.
    work_dir : str or os.PathLike, optional
        Where the temporary data files go (default: the system temp dir). It should be on the filesystem whose
        behaviour is wanted (ext4 with large folios here); its type is stored in each case (``fs``).
    cache_dir : str or os.PathLike, optional
        Where the compiled helper is kept (see `build_touch_helper`).
    attempts : int
        How many times a case is tried (each attempt is a fresh pair of recordings on a freshly written file;
        a case is kept only when both recordings of one attempt agree). Failed attempts are listed in the
        notes.
    log : callable or None
        Receives progress lines, every dropped case and every note (default: print to stderr).

    Returns
    -------
    RecordReport

    Raises
    ------
    InputError
        Not Linux, page size is not 4096, not root or ``/proc/kpageflags`` unreadable (layouts cannot be
        read), no C compiler, unknown layout/pattern/mapping names or a mapping past EOF.

    Notes
    -----
    Each case's JSON has the FORMAT.md keys plus ``kernel`` (``uname -r``), ``recorder``,
    ``fault_around_bytes_source`` (``"default"`` when debugfs could not be read: the value is then assumed to
    be the default 65536), ``access``, ``prot``, ``seed``, ``fs``, ``thp_enabled`` and ``detail1``/``detail2``
    (more smaps fields in pages and ``pagemap_anon``, the present pages that are anonymous, i.e. COW copies).
    """
    say = log or (lambda _msg: None)
    if attempts < 1:
        raise InputError(f"attempts: must be >= 1, got {attempts}")
    require_layout_access()
    if specs is None:
        specs = quick_specs() if quick else plan_cases(layouts, patterns, mappings, npages)
    specs = list(specs)
    exe = build_touch_helper(cache_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    uname = os.uname()
    far, far_src = read_fault_around_bytes()
    report = RecordReport(out, kernel=uname.release, fault_around_bytes=far, fault_around_bytes_source=far_src)

    def note(msg: str) -> None:
        report.notes.append(msg)
        say(f"note: {msg}")

    if far_src == "default":
        note(
            f"{FAULT_AROUND_PATH} is not readable (debugfs not mounted or no CONFIG_DEBUG_FS); recorded "
            f"fault_around_bytes = {DEFAULT_FAULT_AROUND_BYTES}, the kernel default "
            '(fault_around_bytes_source "default")'
        )
    for msg in _damon_notes():
        note(msg)
    names = [f"{i:03d}_{s.label()}" for i, s in enumerate(specs)]
    work = Path(tempfile.mkdtemp(prefix="fastfault-record-", dir=work_dir))
    try:
        fs = _fs_type(work)
        if not _probe_large_folios(work):
            note(
                f"the page cache of {fs} at {work.parent} holds only order-0 folios (no large folios on this "
                "kernel/filesystem): recording order-0 cases only"
            )
            keep = [i for i, s in enumerate(specs) if s.layout == "order0"]
            for i, s in enumerate(specs):
                if s.layout != "order0":
                    report.dropped.append((names[i], "needs large folios, which this kernel does not create here"))
            specs_idx = keep
        else:
            specs_idx = list(range(len(specs)))
        common = {
            "kernel": uname.release,
            "recorder": RECORDER,
            "fault_around_bytes_source": far_src,
            "seed": seed,
            "fs": fs,
            "thp_enabled": _read_text("/sys/kernel/mm/transparent_hugepage/enabled"),
        }
        # Record layout by layout (one data file each, deleted afterwards), in plan order within a layout.
        groups: dict[tuple[str, int], list[int]] = {}
        for i in specs_idx:
            groups.setdefault((specs[i].layout, specs[i].npages), []).append(i)
        results: dict[int, Path | str] = {}
        for (layout, n), idxs in groups.items():
            file = work / f"{layout}-{n}.dat"
            plan = layout_plan(layout, n, seed)
            lay_rng = np.random.default_rng([seed, zlib.crc32(f"layout/{layout}/{n}".encode())])
            problem = _ensure_layout(file, layout, plan, lay_rng, fresh=True)
            if problem:
                for i in idxs:
                    results[i] = f"layout not obtained: {problem}"
                    say(f"dropped {names[i]}: {results[i]}")
                continue
            say(f"layout {layout} ({describe_layout(plan)})")
            for i in idxs:
                for attempt in range(1, attempts + 1):
                    try:
                        results[i] = _record_one(
                            exe, work, file, specs[i], names[i], plan, lay_rng, seed, far, common, out
                        )
                    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
                        results[i] = f"error: {e}"
                    if not isinstance(results[i], str) or attempt == attempts:
                        break
                    note(f"{names[i]}: attempt {attempt} failed ({results[i]}); recording it again")
                    _ensure_layout(file, layout, plan, lay_rng, fresh=True)
                if isinstance(results[i], str):
                    say(f"dropped {names[i]}: {results[i]}")
                else:
                    say(f"wrote {names[i]}")
            file.unlink(missing_ok=True)
        for i in specs_idx:
            r = results[i]
            if isinstance(r, Path):
                report.written.append(r)
            else:
                report.dropped.append((names[i], r))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    say(f"{len(report.written)} cases written to {out}, {len(report.dropped)} dropped")
    return report


def _ensure_layout(
    file: Path, layout: str, plan: np.ndarray, rng: np.random.Generator, fresh: bool = False
) -> str | None:
    """Make sure ``file`` has the planned layout (recreating it once if needed); return a problem or None."""
    for attempt in range(2):
        if fresh or attempt or not file.exists():
            _make_layout_file(file, layout, plan, rng)
        got = read_file_layout(file)
        if np.array_equal(got, plan):
            return None
        fresh = True
    return f"kernel gave {describe_layout(got)}, wanted {describe_layout(plan)}"


def _record_one(
    exe: Path,
    work: Path,
    file: Path,
    spec: CaseSpec,
    name: str,
    plan: np.ndarray,
    lay_rng: np.random.Generator,
    seed: int,
    far: int,
    common: dict[str, Any],
    out: Path,
) -> Path | str:
    m = spec.mapping
    vma_pages = m.length(spec.npages)
    vma_start = m.vma_start()
    rng = np.random.default_rng([seed, zlib.crc32(spec.label().encode())])
    traces = make_traces(spec.pattern, m.access, vma_pages, rng)
    problem = _ensure_layout(file, spec.layout, plan, lay_rng)
    if problem:
        return f"layout not obtained: {problem}"
    layouts = [plan]
    obs = []
    for _ in range(2):
        obs.append(_run_helper(exe, work, file, vma_start, vma_pages, m.offset_pages, m, traces))
        if m.has_stores and not m.private:
            _fsync_path(file)  # the stores dirtied the page cache: write it back so the next run starts clean
        layouts.append(read_file_layout(file))
    for k, lay in enumerate(layouts[1:], 1):
        if not np.array_equal(lay, plan):
            when = "during the first recording" if k == 1 else "during the second recording"
            return f"folio layout changed {when}: now {describe_layout(lay)}"
    for k, o in enumerate(obs, 1):
        for ph in range(2):
            if o.phases[ph]["majflt"]:
                return f"major fault: recording {k} phase{ph + 1} majflt={o.phases[ph]['majflt']}"
    d = _diff(obs[0], obs[1])
    if d:
        return d
    o = obs[0]
    meta: dict[str, Any] = {
        "layout": spec.layout,
        "pattern": spec.pattern,
        "vma_start": vma_start,
        "vma_aligned_2m": vma_start % (_PMD_PAGES * PAGE_SIZE) == 0,
        "npages": spec.npages,
        "vma_pages": vma_pages,
        "offset_pages": m.offset_pages,
        "private": m.private,
        "fault_around_bytes": far,
        "arch": os.uname().machine,
        "phase1": o.phases[0],
        "phase2": o.phases[1],
        **common,
        "access": m.access,
        "prot": "rw" if m.has_stores else "r",
        "mapping": m.tag(),
        "detail1": o.details[0],
        "detail2": o.details[1],
    }
    if not o.mlocked:
        meta["helper_mlocked"] = False
    t1, t2, w1, w2 = traces
    arrays = {
        "folio_size": plan,
        "trace1": t1,
        "trace2": t2,
        "present1": o.present[0],
        "present2": o.present[1],
    }
    if w1 is not None:
        arrays["write1"] = np.asarray(w1, dtype=bool)
        arrays["write2"] = np.asarray(w2, dtype=bool)
    json.dumps(meta)  # fail early on a non-serialisable value
    return write_case(out, name, meta, arrays)

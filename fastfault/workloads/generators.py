"""Seeded, documented generated workloads over synthetic file mappings.

Every generator takes ``seed`` (an int; all randomness is drawn from
``numpy.random.default_rng(seed)`` in a fixed order, so the result is bit-reproducible) and
keyword parameters, and returns a :class:`~fastfault.trace.format.Trace` whose mappings are
synthetic files (``path="synthetic:NAME"``, ``file_size`` set). Traces are run-length collapsed
(lossless); ``n`` always counts accesses (``trace.n_accesses``), not rows.

Layout parameters shared by the single-file generators:

``npages``
    File (and mapping) size in 4 KiB pages.
``base``
    Lowest virtual address; the mapping starts at ``base`` rounded up to ``align``
    (default ``0x7f0000000000``).
``align``
    Alignment of each mapping's start in bytes (power of two, multiple of 4096; default 2 MiB,
    so that PMD-size folios can be mapped by a PMD).
``file_offset``
    Page offset into the file of the mapping's first page (the file then has
    ``file_offset + npages`` pages).
``shared``
    ``MAP_SHARED`` (``perms[3] == 's'``) instead of private.
``kind`` / ``write_fraction``
    Base access kind (``"load"``, ``"store"`` or ``"ifetch"``) and the probability that an access
    is turned into a store. Permissions follow the kinds used: always ``r``, ``w`` if any store,
    ``x`` if any instruction fetch.

The registry :data:`WORKLOADS` and :func:`make_workload` let the CLI and experiment files name
them (``make_workload("zipf", seed=1, npages=65536, n=1_000_000, alpha=1.1)``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from fastfault.codes import AccessKind
from fastfault.errors import InputError
from fastfault.trace.format import PAGE_SHIFT, PAGE_SIZE, Mapping, Trace, collapse_runs, make_trace

#: Default lowest address of synthetic mappings.
DEFAULT_BASE = 0x7F0000000000
#: Default alignment of synthetic mappings (2 MiB).
DEFAULT_ALIGN = 2 << 20

_KINDS = {"load": AccessKind.LOAD, "store": AccessKind.STORE, "ifetch": AccessKind.IFETCH}

# ------------------------------------------------------------------------------ validation


def _int(name: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    if isinstance(value, str):
        try:
            value = int(value, 0)
        except ValueError:
            raise InputError(f"workload parameter {name}={value!r} is not an integer") from None
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise InputError(f"workload parameter {name}={value!r} is not an integer")
    value = int(value)
    if lo is not None and value < lo:
        raise InputError(f"workload parameter {name}={value} must be >= {lo}")
    if hi is not None and value > hi:
        raise InputError(f"workload parameter {name}={value} must be <= {hi}")
    return value


def _float(name: str, value: Any, lo: float | None = None, hi: float | None = None) -> float:
    try:
        if isinstance(value, bool):
            raise ValueError
        value = float(value)
    except (TypeError, ValueError):
        raise InputError(f"workload parameter {name}={value!r} is not a number") from None
    if not np.isfinite(value):
        raise InputError(f"workload parameter {name}={value} is not finite")
    if lo is not None and value < lo:
        raise InputError(f"workload parameter {name}={value} must be >= {lo}")
    if hi is not None and value > hi:
        raise InputError(f"workload parameter {name}={value} must be <= {hi}")
    return value


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    if isinstance(value, int | np.integer) and value in (0, 1):
        return bool(value)
    raise InputError(f"workload parameter {name}={value!r} is not a boolean")


def _kind(value: Any) -> int:
    if isinstance(value, str) and value.lower() in _KINDS:
        return int(_KINDS[value.lower()])
    raise InputError(f"workload parameter kind={value!r} must be one of {', '.join(_KINDS)}")


def _layout_params(base: Any, align: Any) -> tuple[int, int]:
    base = _int("base", base, 0, (1 << 57) - 1)
    align = _int("align", align, PAGE_SIZE)
    if align & (align - 1):
        raise InputError(f"workload parameter align={align} must be a power of two")
    return base, align


def _align_up(x: int, a: int) -> int:
    return (x + a - 1) & ~(a - 1)


def _perms(kinds: np.ndarray, shared: bool) -> str:
    present = np.bincount(kinds, minlength=3) > 0 if kinds.size else np.zeros(3, dtype=bool)
    w = "w" if present[AccessKind.STORE] else "-"
    x = "x" if present[AccessKind.IFETCH] else "-"
    return f"r{w}{x}{'s' if shared else 'p'}"


def _kinds(rng: np.random.Generator, n: int, kind: Any, write_fraction: Any) -> np.ndarray:
    """Access kinds: ``kind`` everywhere, then stores with probability ``write_fraction``."""
    k = _kind(kind)
    wf = _float("write_fraction", write_fraction, 0.0, 1.0)
    out = np.full(n, k, dtype=np.uint8)
    if wf > 0.0:
        if k == AccessKind.IFETCH:
            raise InputError("workload parameters kind='ifetch' and write_fraction > 0 exclude each other")
        out[rng.random(n) < wf] = AccessKind.STORE
    return out


def _finish(
    name: str,
    seed: int,
    params: dict[str, Any],
    vpn: np.ndarray,
    kind: np.ndarray,
    mappings: list[Mapping],
    count: np.ndarray | None = None,
) -> Trace:
    meta = {
        "name": name,
        "workload": name,
        "seed": int(seed),
        "params": {
            k: (v if isinstance(v, int | float | str | bool | type(None)) else repr(v)) for k, v in params.items()
        },
        "tool": "fastfault.workloads",
    }
    return collapse_runs(make_trace(vpn, kind, count, mappings, meta))


def _rng(seed: Any) -> np.random.Generator:
    return np.random.default_rng(_int("seed", seed, 0))


# ------------------------------------------------------------------ page-index patterns
# Each pattern returns file page indices in [0, npages) (int64, shape (n,)).


def _p_sequential(rng: np.random.Generator, npages: int, *, passes: Any = 1, n: Any = None) -> np.ndarray:
    passes = _int("passes", passes, 1)
    total = npages * passes if n is None else _int("n", n, 1)
    return np.arange(total, dtype=np.int64) % npages


def _p_reverse(rng: np.random.Generator, npages: int, *, passes: Any = 1, n: Any = None) -> np.ndarray:
    return npages - 1 - _p_sequential(rng, npages, passes=passes, n=n)


def _p_strided(
    rng: np.random.Generator, npages: int, *, stride: Any = 16, offset: Any = 0, passes: Any = 1, n: Any = None
) -> np.ndarray:
    stride = _int("stride", stride, 1)
    offset = _int("offset", offset, 0, npages - 1)
    passes = _int("passes", passes, 1)
    per_pass = max(1, -(-(npages - offset) // stride))
    total = per_pass * passes if n is None else _int("n", n, 1)
    i = np.arange(total, dtype=np.int64)
    # each pass walks offset, offset+stride, ... < npages, then starts again at offset
    return offset + (i % per_pass) * stride


def _p_random(rng: np.random.Generator, npages: int, *, n: Any = 100_000) -> np.ndarray:
    n = _int("n", n, 1)
    return rng.integers(0, npages, size=n, dtype=np.int64)


def _p_zipf(
    rng: np.random.Generator, npages: int, *, n: Any = 100_000, alpha: Any = 1.0, permute: Any = True
) -> np.ndarray:
    n = _int("n", n, 1)
    alpha = _float("alpha", alpha, 0.0, 10.0)
    permute = _bool("permute", permute)
    weights = np.arange(1, npages + 1, dtype=np.float64) ** -alpha
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    ranks = np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), npages - 1).astype(np.int64)
    if not permute:
        return ranks
    perm = rng.permutation(npages).astype(np.int64)
    return perm[ranks]


def _p_hotcold(
    rng: np.random.Generator,
    npages: int,
    *,
    n: Any = 100_000,
    hot_fraction: Any = 0.1,
    hot_probability: Any = 0.9,
    scatter: Any = False,
) -> np.ndarray:
    n = _int("n", n, 1)
    hf = _float("hot_fraction", hot_fraction, 0.0, 1.0)
    hp = _float("hot_probability", hot_probability, 0.0, 1.0)
    scatter = _bool("scatter", scatter)
    nhot = min(npages, max(1, round(hf * npages)))
    order = rng.permutation(npages).astype(np.int64) if scatter else np.arange(npages, dtype=np.int64)
    hot, cold = order[:nhot], order[nhot:]
    is_hot = rng.random(n) < hp
    if cold.size == 0:
        is_hot[:] = True
    u = rng.random(n)
    out = np.empty(n, dtype=np.int64)
    out[is_hot] = hot[(u[is_hot] * nhot).astype(np.int64)]
    if cold.size:
        out[~is_hot] = cold[(u[~is_hot] * cold.size).astype(np.int64)]
    return out


_PATTERNS: dict[str, Callable[..., np.ndarray]] = {
    "sequential": _p_sequential,
    "reverse": _p_reverse,
    "strided": _p_strided,
    "random": _p_random,
    "zipf": _p_zipf,
    "hotcold": _p_hotcold,
}


def _pattern_param_names(pattern: str) -> list[str]:
    sig = inspect.signature(_PATTERNS[pattern])
    return [p for p in sig.parameters if p not in ("rng", "npages")]


def _call_pattern(pattern: str, rng: np.random.Generator, npages: int, params: dict[str, Any]) -> np.ndarray:
    if pattern not in _PATTERNS:
        raise InputError(f"unknown access pattern {pattern!r}; valid: {', '.join(_PATTERNS)}")
    valid = _pattern_param_names(pattern)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise InputError(f"pattern {pattern!r}: unknown parameter(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
    return _PATTERNS[pattern](rng, npages, **params)


def _file_mapping(path: str, start: int, npages: int, file_offset: int, perms: str) -> Mapping:
    return Mapping(
        start=start,
        end=start + npages * PAGE_SIZE,
        offset=file_offset * PAGE_SIZE,
        perms=perms,
        path=path,
        file_size=(file_offset + npages) * PAGE_SIZE,
    )


def _single(
    name: str,
    seed: Any,
    npages: Any,
    pattern_params: dict[str, Any],
    *,
    kind: Any,
    write_fraction: Any,
    shared: Any,
    base: Any,
    align: Any,
    file_offset: Any,
) -> Trace:
    rng = _rng(seed)
    npages = _int("npages", npages, 1, 1 << 36)
    base, align = _layout_params(base, align)
    file_offset = _int("file_offset", file_offset, 0, 1 << 36)
    shared = _bool("shared", shared)
    pages = _call_pattern(name, rng, npages, pattern_params)
    kinds = _kinds(rng, pages.shape[0], kind, write_fraction)
    start = _align_up(base, align)
    m = _file_mapping("synthetic:file0", start, npages, file_offset, _perms(kinds, shared))
    params = dict(
        pattern_params,
        npages=npages,
        kind=kind,
        write_fraction=write_fraction,
        shared=shared,
        base=base,
        align=align,
        file_offset=file_offset,
    )
    return _finish(name, int(seed), params, (start >> PAGE_SHIFT) + pages, kinds, [m])


# ------------------------------------------------------------------------ public generators


def sequential(
    *,
    seed: int = 0,
    npages: int = 16384,
    passes: int = 1,
    n: int | None = None,
    kind: str = "load",
    write_fraction: float = 0.0,
    shared: bool = False,
    base: int = DEFAULT_BASE,
    align: int = DEFAULT_ALIGN,
    file_offset: int = 0,
) -> Trace:
    """Sequential passes over one file: pages 0, 1, ..., npages-1, repeated ``passes`` times.

    Parameters
    ----------
    seed : int
        Seed (used only for ``write_fraction``).
    npages : int
        File size in pages.
    passes : int
        Number of passes (ignored if ``n`` is given).
    n : int, optional
        Number of accesses; the walk wraps around. Default ``npages * passes``.
    kind, write_fraction, shared, base, align, file_offset
        See the module docstring.

    Returns
    -------
    Trace
        One mapping ``synthetic:file0``.
    """
    return _single(
        "sequential",
        seed,
        npages,
        {"passes": passes, "n": n},
        kind=kind,
        write_fraction=write_fraction,
        shared=shared,
        base=base,
        align=align,
        file_offset=file_offset,
    )


def reverse(
    *,
    seed: int = 0,
    npages: int = 16384,
    passes: int = 1,
    n: int | None = None,
    kind: str = "load",
    write_fraction: float = 0.0,
    shared: bool = False,
    base: int = DEFAULT_BASE,
    align: int = DEFAULT_ALIGN,
    file_offset: int = 0,
) -> Trace:
    """Descending passes over one file: pages npages-1, ..., 1, 0 (defeats forward fault-around).

    Parameters
    ----------
    seed, npages, passes, n, kind, write_fraction, shared, base, align, file_offset
        As for :func:`sequential`.

    Returns
    -------
    Trace
        One mapping ``synthetic:file0``.
    """
    return _single(
        "reverse",
        seed,
        npages,
        {"passes": passes, "n": n},
        kind=kind,
        write_fraction=write_fraction,
        shared=shared,
        base=base,
        align=align,
        file_offset=file_offset,
    )


def strided(
    *,
    seed: int = 0,
    npages: int = 16384,
    stride: int = 16,
    offset: int = 0,
    passes: int = 1,
    n: int | None = None,
    kind: str = "load",
    write_fraction: float = 0.0,
    shared: bool = False,
    base: int = DEFAULT_BASE,
    align: int = DEFAULT_ALIGN,
    file_offset: int = 0,
) -> Trace:
    """Strided passes: pages offset, offset+stride, offset+2*stride, ... < npages, per pass.

    Parameters
    ----------
    seed : int
        Seed (used only for ``write_fraction``).
    npages : int
        File size in pages.
    stride : int
        Distance between consecutive accesses, in pages (16 = one access per 64 KiB window).
    offset : int
        First page of every pass (``0 <= offset < npages``).
    passes : int
        Number of passes (ignored if ``n`` is given).
    n : int, optional
        Number of accesses (wrapping to ``offset`` after the last page of a pass).
    kind, write_fraction, shared, base, align, file_offset
        See the module docstring.

    Returns
    -------
    Trace
        One mapping ``synthetic:file0``.
    """
    return _single(
        "strided",
        seed,
        npages,
        {"stride": stride, "offset": offset, "passes": passes, "n": n},
        kind=kind,
        write_fraction=write_fraction,
        shared=shared,
        base=base,
        align=align,
        file_offset=file_offset,
    )


def uniform_random(
    *,
    seed: int = 0,
    npages: int = 16384,
    n: int = 100_000,
    kind: str = "load",
    write_fraction: float = 0.0,
    shared: bool = False,
    base: int = DEFAULT_BASE,
    align: int = DEFAULT_ALIGN,
    file_offset: int = 0,
) -> Trace:
    """Independent uniformly random pages of one file.

    Parameters
    ----------
    seed : int
        Seed.
    npages : int
        File size in pages.
    n : int
        Number of accesses.
    kind, write_fraction, shared, base, align, file_offset
        See the module docstring.

    Returns
    -------
    Trace
        One mapping ``synthetic:file0``.
    """
    return _single(
        "random",
        seed,
        npages,
        {"n": n},
        kind=kind,
        write_fraction=write_fraction,
        shared=shared,
        base=base,
        align=align,
        file_offset=file_offset,
    )


def zipf(
    *,
    seed: int = 0,
    npages: int = 16384,
    n: int = 100_000,
    alpha: float = 1.0,
    permute: bool = True,
    kind: str = "load",
    write_fraction: float = 0.0,
    shared: bool = False,
    base: int = DEFAULT_BASE,
    align: int = DEFAULT_ALIGN,
    file_offset: int = 0,
) -> Trace:
    """Zipf-distributed pages: the page of popularity rank k is drawn with probability ~ k**-alpha.

    Parameters
    ----------
    seed : int
        Seed.
    npages : int
        File size in pages (the number of ranks; the distribution is truncated there).
    n : int
        Number of accesses.
    alpha : float
        Exponent (0 = uniform; 1 = classic Zipf; larger = more skewed), in [0, 10].
    permute : bool
        Spread ranks over the file with a random permutation (hot pages scattered); if False,
        rank k is page k-1 (hot pages packed at the start of the file).
    kind, write_fraction, shared, base, align, file_offset
        See the module docstring.

    Returns
    -------
    Trace
        One mapping ``synthetic:file0``.
    """
    return _single(
        "zipf",
        seed,
        npages,
        {"n": n, "alpha": alpha, "permute": permute},
        kind=kind,
        write_fraction=write_fraction,
        shared=shared,
        base=base,
        align=align,
        file_offset=file_offset,
    )


def hot_cold(
    *,
    seed: int = 0,
    npages: int = 16384,
    n: int = 100_000,
    hot_fraction: float = 0.1,
    hot_probability: float = 0.9,
    scatter: bool = False,
    kind: str = "load",
    write_fraction: float = 0.0,
    shared: bool = False,
    base: int = DEFAULT_BASE,
    align: int = DEFAULT_ALIGN,
    file_offset: int = 0,
) -> Trace:
    """Hot/cold sets: with probability ``hot_probability`` a uniform page of the hot set, else of the cold set.

    Parameters
    ----------
    seed : int
        Seed.
    npages : int
        File size in pages.
    n : int
        Number of accesses.
    hot_fraction : float
        Share of the file's pages that are hot (at least one page).
    hot_probability : float
        Probability that an access goes to the hot set.
    scatter : bool
        Hot pages drawn at random over the file; if False they are the first pages of the file.
    kind, write_fraction, shared, base, align, file_offset
        See the module docstring.

    Returns
    -------
    Trace
        One mapping ``synthetic:file0``.
    """
    return _single(
        "hotcold",
        seed,
        npages,
        {"n": n, "hot_fraction": hot_fraction, "hot_probability": hot_probability, "scatter": scatter},
        kind=kind,
        write_fraction=write_fraction,
        shared=shared,
        base=base,
        align=align,
        file_offset=file_offset,
    )


def _parse_value(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for conv in (lambda s: int(s, 0), float):
        try:
            return conv(text.strip())
        except ValueError:
            pass
    return text.strip()


def _parse_sub_specs(spec: Any, what: str) -> list[tuple[str, dict[str, Any]]]:
    """``"sequential:passes=2;random:n=1000"`` or ``[{"pattern": "random", "n": 1000}, ...]``."""
    out: list[tuple[str, dict[str, Any]]] = []
    if isinstance(spec, str):
        for part in filter(None, (p.strip() for p in spec.split(";"))):
            name, _, rest = part.partition(":")
            params: dict[str, Any] = {}
            for item in filter(None, (x.strip() for x in rest.split(","))):
                key, eq, value = item.partition("=")
                if not eq:
                    raise InputError(f"workload parameter {what}: {item!r} is not KEY=VALUE")
                params[key.strip()] = _parse_value(value)
            out.append((name.strip(), params))
    elif isinstance(spec, list | tuple):
        for item in spec:
            if not isinstance(item, dict) or "pattern" not in item:
                raise InputError(f"workload parameter {what}: each entry needs a 'pattern' key, got {item!r}")
            params = dict(item)
            out.append((str(params.pop("pattern")), params))
    else:
        raise InputError(f"workload parameter {what} must be a 'name:k=v,...;name:...' string or a list of dicts")
    if not out:
        raise InputError(f"workload parameter {what} is empty")
    return out


_SUB_KIND_KEYS = ("kind", "write_fraction")


def phases(
    *,
    seed: int = 0,
    phases: Any = "sequential;zipf:n=50000,alpha=1.2;random:n=20000",
    npages: int = 16384,
    shared: bool = False,
    base: int = DEFAULT_BASE,
    align: int = DEFAULT_ALIGN,
    file_offset: int = 0,
) -> Trace:
    """Phase changes: several access patterns over the same file, one after the other.

    Parameters
    ----------
    seed : int
        Seed; phase i draws from child i of ``numpy.random.SeedSequence(seed)``.
    phases : str or list of dict
        ``"pattern:key=value,...;pattern:..."`` or ``[{"pattern": "zipf", "alpha": 1.2, ...}, ...]``.
        Patterns: sequential, reverse, strided, random, zipf, hotcold, with their own parameters
        plus ``kind`` and ``write_fraction``.
    npages, shared, base, align, file_offset
        Layout of the one file (see the module docstring).

    Returns
    -------
    Trace
        One mapping ``synthetic:file0``; ``meta["phase_starts"]`` holds the access index at which
        each phase begins.
    """
    npages = _int("npages", npages, 1, 1 << 36)
    base, align = _layout_params(base, align)
    file_offset = _int("file_offset", file_offset, 0, 1 << 36)
    shared = _bool("shared", shared)
    specs = _parse_sub_specs(phases, "phases")
    children = np.random.SeedSequence(_int("seed", seed, 0)).spawn(len(specs))
    pages_l, kinds_l = [], []
    for (pattern, params), child in zip(specs, children, strict=True):
        rng = np.random.default_rng(child)
        p = {k: v for k, v in params.items() if k not in _SUB_KIND_KEYS}
        pages = _call_pattern(pattern, rng, npages, p)
        pages_l.append(pages)
        kinds_l.append(_kinds(rng, pages.shape[0], params.get("kind", "load"), params.get("write_fraction", 0.0)))
    pages = np.concatenate(pages_l)
    kinds = np.concatenate(kinds_l)
    start = _align_up(base, align)
    m = _file_mapping("synthetic:file0", start, npages, file_offset, _perms(kinds, shared))
    trace = _finish(
        "phases",
        int(seed),
        {
            "phases": str(phases),
            "npages": npages,
            "shared": shared,
            "base": base,
            "align": align,
            "file_offset": file_offset,
        },
        (start >> PAGE_SHIFT) + pages,
        kinds,
        [m],
    )
    trace.meta["phase_starts"] = np.cumsum([0] + [len(p) for p in pages_l[:-1]]).tolist()
    return trace


def multi_file(
    *,
    seed: int = 0,
    nfiles: int = 4,
    npages: int = 4096,
    pattern: str = "sequential",
    pattern_params: Any = "",
    burst: int = 16,
    kind: str = "load",
    write_fraction: float = 0.0,
    shared: bool = False,
    base: int = DEFAULT_BASE,
    align: int = DEFAULT_ALIGN,
) -> Trace:
    """Several files at once: one pattern per file, interleaved round-robin in bursts.

    Parameters
    ----------
    seed : int
        Seed; file i's pattern draws from child i of ``numpy.random.SeedSequence(seed)``, the
        kinds from child ``nfiles``.
    nfiles : int
        Number of files (``synthetic:file0`` ...), each mapped at its own ``align``-aligned start.
    npages : int
        Pages per file.
    pattern : str
        Access pattern of every file (sequential, reverse, strided, random, zipf, hotcold).
    pattern_params : str or dict
        Its parameters, ``"key=value,..."`` or a dict (e.g. ``"n=10000,alpha=1.2"``).
    burst : int
        Consecutive accesses to one file before switching to the next; files whose accesses are
        exhausted drop out of the rotation.
    kind, write_fraction, shared, base, align
        See the module docstring.

    Returns
    -------
    Trace
        ``nfiles`` mappings.
    """
    nfiles = _int("nfiles", nfiles, 1, 4096)
    npages = _int("npages", npages, 1, 1 << 36)
    burst = _int("burst", burst, 1)
    base, align = _layout_params(base, align)
    shared = _bool("shared", shared)
    if isinstance(pattern_params, dict):
        params = dict(pattern_params)
    else:
        params = _parse_sub_specs(f"{pattern}:{pattern_params or ''}", "pattern_params")[0][1]
    children = np.random.SeedSequence(_int("seed", seed, 0)).spawn(nfiles + 1)
    per_file = [_call_pattern(pattern, np.random.default_rng(c), npages, params) for c in children[:nfiles]]
    # round-robin bursts: access j of file f is in burst j // burst; order by (burst, file, j)
    file_idx = np.concatenate([np.full(p.shape[0], f, dtype=np.int64) for f, p in enumerate(per_file)])
    within = np.concatenate([np.arange(p.shape[0], dtype=np.int64) for p in per_file])
    order = np.lexsort((within, file_idx, within // burst))
    pages = np.concatenate(per_file)[order]
    files = file_idx[order]
    kinds = _kinds(np.random.default_rng(children[nfiles]), pages.shape[0], kind, write_fraction)
    span = _align_up(npages * PAGE_SIZE, align)
    starts = [_align_up(base, align) + f * span for f in range(nfiles)]
    mappings = [
        _file_mapping(f"synthetic:file{f}", starts[f], npages, 0, _perms(kinds[files == f], shared))
        for f in range(nfiles)
    ]
    start_vpn = np.array(starts, dtype=np.int64) >> PAGE_SHIFT
    return _finish(
        "multifile",
        int(seed),
        {
            "nfiles": nfiles,
            "npages": npages,
            "pattern": pattern,
            "pattern_params": str(pattern_params),
            "burst": burst,
            "kind": kind,
            "write_fraction": write_fraction,
            "shared": shared,
            "base": base,
            "align": align,
        },
        start_vpn[files] + pages,
        kinds,
        mappings,
    )


def program_start(
    *,
    seed: int = 0,
    n: int = 200_000,
    nlibs: int = 4,
    binary_pages: int = 512,
    lib_pages: int = 256,
    rodata_fraction: float = 0.25,
    data_pages: int = 16,
    run_pages: float = 3.0,
    fetches_per_page: float = 20.0,
    code_alpha: float = 1.1,
    binary_weight: float = 0.5,
    lib_alpha: float = 1.0,
    data_fraction: float = 0.3,
    store_fraction: float = 0.3,
    base: int = 0x400000,
    align: int = DEFAULT_ALIGN,
) -> Trace:
    """Program start-up: code of a binary and its shared libraries, with basic-block locality.

    The address space holds a binary (``synthetic:bin``) and ``nlibs`` libraries
    (``synthetic:lib1.so`` ...), each laid out like an ELF object linked with separate code:
    a 1-page ``r--p`` header, ``r-xp`` text, ``r--p`` rodata and ``rw-p`` data, contiguous in
    the file and in memory, each object starting at an ``align``-aligned address.

    The trace has two parts:

    1. *loading* (as ``ld.so`` does): for each object in load order a LOAD of its header page,
       then a STORE to every data page (relocations / GOT);
    2. *execution*: a sequence of runs. Each run picks an object (the binary with probability
       ``binary_weight``, else a library with Zipf(``lib_alpha``) popularity), a start page in its
       text (Zipf(``code_alpha``) over a per-object random permutation of the text pages: hot
       functions scattered through the text), and a length drawn from a geometric distribution
       with mean ``run_pages``; it fetches those text pages in order, each page visit being
       ``Geometric(1 / fetches_per_page)`` IFETCH accesses (one row with that count). After each
       page visit, with probability ``data_fraction``, one data access of the same object
       follows: a STORE to a data page with probability ``store_fraction``, else a LOAD, to
       rodata or data with equal probability (uniform page).

    The execution part is cut so that the whole trace has exactly ``n`` accesses.

    Parameters
    ----------
    seed : int
        Seed.
    n : int
        Total number of accesses (loading included; at least the loading part's length).
    nlibs : int
        Number of shared libraries (0..64).
    binary_pages : int
        Text pages of the binary.
    lib_pages : int
        Text pages of each library.
    rodata_fraction : float
        Rodata pages per text page (at least one page).
    data_pages : int
        Data (``rw-p``) pages of each object.
    run_pages : float
        Mean length (pages, >= 1) of a run of sequentially fetched text pages.
    fetches_per_page : float
        Mean instruction fetches per text page visit (>= 1).
    code_alpha : float
        Zipf exponent of run start pages within an object's text.
    binary_weight : float
        Probability that a run executes the binary rather than a library.
    lib_alpha : float
        Zipf exponent of library popularity (library 1 most popular).
    data_fraction : float
        Probability of a data access after each text page visit.
    store_fraction : float
        Share of data accesses that are stores (to the data segment).
    base : int
        Address of the binary (libraries follow); default ``0x400000`` (non-PIE binaries).
    align : int
        Alignment of every object's start in bytes.

    Returns
    -------
    Trace
        ``4 * (1 + nlibs)`` mappings; ``meta["load_accesses"]`` is the length of the loading part.
    """
    rng = _rng(seed)
    n = _int("n", n, 1)
    nlibs = _int("nlibs", nlibs, 0, 64)
    binary_pages = _int("binary_pages", binary_pages, 1, 1 << 24)
    lib_pages = _int("lib_pages", lib_pages, 1, 1 << 24)
    rodata_fraction = _float("rodata_fraction", rodata_fraction, 0.0, 16.0)
    data_pages = _int("data_pages", data_pages, 1, 1 << 24)
    run_pages = _float("run_pages", run_pages, 1.0, 1e6)
    fetches_per_page = _float("fetches_per_page", fetches_per_page, 1.0, 1e6)
    code_alpha = _float("code_alpha", code_alpha, 0.0, 10.0)
    binary_weight = _float("binary_weight", binary_weight, 0.0, 1.0)
    lib_alpha = _float("lib_alpha", lib_alpha, 0.0, 10.0)
    data_fraction = _float("data_fraction", data_fraction, 0.0, 1.0)
    store_fraction = _float("store_fraction", store_fraction, 0.0, 1.0)
    base, align = _layout_params(base, align)
    if nlibs == 0:
        binary_weight = 1.0

    # ---- layout: per object [header, text, rodata, data]
    nobj = 1 + nlibs
    text = np.array([binary_pages] + [lib_pages] * nlibs, dtype=np.int64)
    rodata = np.maximum(1, np.ceil(text * rodata_fraction)).astype(np.int64)
    seg_pages = np.stack([np.ones(nobj, dtype=np.int64), text, rodata, np.full(nobj, data_pages)], axis=1)
    seg_perms = ("r--p", "r-xp", "r--p", "rw-p")
    seg_start = np.zeros((nobj, 4), dtype=np.int64)  # vpn of each segment
    mappings: list[Mapping] = []
    addr = _align_up(base, align)
    for o in range(nobj):
        path = "synthetic:bin" if o == 0 else f"synthetic:lib{o}.so"
        fsize = int(seg_pages[o].sum()) * PAGE_SIZE
        off = 0
        for s in range(4):
            seg_start[o, s] = (addr + off) >> PAGE_SHIFT
            mappings.append(
                Mapping(addr + off, addr + off + int(seg_pages[o, s]) * PAGE_SIZE, off, seg_perms[s], path, fsize)
            )
            off += int(seg_pages[o, s]) * PAGE_SIZE
        addr = _align_up(addr + off, align)

    # ---- loading part
    load_vpn = np.concatenate(
        [np.concatenate(([seg_start[o, 0]], seg_start[o, 3] + np.arange(data_pages))) for o in range(nobj)]
    )
    load_kind = np.tile(np.concatenate(([AccessKind.LOAD], np.full(data_pages, AccessKind.STORE))), nobj)
    load_kind = load_kind.astype(np.uint8)
    if n < load_vpn.shape[0]:
        raise InputError(f"workload parameter n={n} is shorter than the loading part ({load_vpn.shape[0]} accesses)")
    remaining = n - load_vpn.shape[0]

    # ---- execution part, drawn in batches until it holds `remaining` accesses
    lib_w = np.arange(1, nlibs + 1, dtype=np.float64) ** -lib_alpha
    lib_cdf = np.cumsum(lib_w) / lib_w.sum() if nlibs else np.ones(1)
    perms = [rng.permutation(int(t)).astype(np.int64) for t in text]
    code_cdfs = []
    for t in text:
        w = np.arange(1, int(t) + 1, dtype=np.float64) ** -code_alpha
        code_cdfs.append(np.cumsum(w) / w.sum())
    vpn_parts, kind_parts, count_parts = [load_vpn], [load_kind], [np.ones(load_vpn.shape[0], dtype=np.int64)]
    got = 0
    mean_per_run = run_pages * (fetches_per_page + data_fraction)
    while got < remaining:
        runs = int((remaining - got) / mean_per_run * 1.2) + 16
        obj = np.where(
            rng.random(runs) < binary_weight,
            0,
            1 + np.minimum(np.searchsorted(lib_cdf, rng.random(runs), side="right"), max(nlibs - 1, 0)),
        ).astype(np.int64)
        u = rng.random(runs)
        start = np.empty(runs, dtype=np.int64)
        for o in range(nobj):
            sel = obj == o
            rank = np.minimum(np.searchsorted(code_cdfs[o], u[sel], side="right"), text[o] - 1)
            start[sel] = perms[o][rank]
        length = np.minimum(rng.geometric(1.0 / run_pages, size=runs), text[obj] - start).astype(np.int64)
        npg = int(length.sum())
        rep = np.repeat(np.arange(runs), length)
        within = np.arange(npg, dtype=np.int64) - np.repeat(np.cumsum(length) - length, length)
        code_vpn = seg_start[obj[rep], 1] + start[rep] + within
        code_cnt = rng.geometric(1.0 / fetches_per_page, size=npg).astype(np.int64)
        has_data = rng.random(npg) < data_fraction
        nd = int(has_data.sum())
        d_obj = obj[rep][has_data]
        is_store = rng.random(nd) < store_fraction
        to_rodata = ~is_store & (rng.random(nd) < 0.5)
        seg = np.where(to_rodata, 2, 3)
        d_page = (rng.random(nd) * seg_pages[d_obj, seg]).astype(np.int64)
        d_vpn = seg_start[d_obj, seg] + d_page
        # interleave: each code row followed by its data row (if any)
        pos = np.arange(npg, dtype=np.int64) + np.cumsum(has_data) - has_data
        out_vpn = np.empty(npg + nd, dtype=np.int64)
        out_kind = np.empty(npg + nd, dtype=np.uint8)
        out_cnt = np.ones(npg + nd, dtype=np.int64)
        out_vpn[pos] = code_vpn
        out_kind[pos] = AccessKind.IFETCH
        out_cnt[pos] = code_cnt
        dpos = pos[has_data] + 1
        out_vpn[dpos] = d_vpn
        out_kind[dpos] = np.where(is_store, AccessKind.STORE, AccessKind.LOAD)
        # cut at exactly `remaining` accesses
        csum = np.cumsum(out_cnt)
        need = remaining - got
        if csum[-1] >= need:
            k = int(np.searchsorted(csum, need))  # first row reaching `need`
            out_vpn, out_kind, out_cnt = out_vpn[: k + 1], out_kind[: k + 1], out_cnt[: k + 1].copy()
            out_cnt[k] -= int(csum[k]) - need
        vpn_parts.append(out_vpn)
        kind_parts.append(out_kind)
        count_parts.append(out_cnt)
        got += int(out_cnt.sum())
    params = {
        "n": n,
        "nlibs": nlibs,
        "binary_pages": binary_pages,
        "lib_pages": lib_pages,
        "rodata_fraction": rodata_fraction,
        "data_pages": data_pages,
        "run_pages": run_pages,
        "fetches_per_page": fetches_per_page,
        "code_alpha": code_alpha,
        "binary_weight": binary_weight,
        "lib_alpha": lib_alpha,
        "data_fraction": data_fraction,
        "store_fraction": store_fraction,
        "base": base,
        "align": align,
    }
    count = np.concatenate(count_parts)
    trace = _finish(
        "program_start",
        int(seed),
        params,
        np.concatenate(vpn_parts),
        np.concatenate(kind_parts),
        mappings,
        count.astype(np.uint32),
    )
    trace.meta["load_accesses"] = int(load_vpn.shape[0])
    return trace


#: Registry of generated workloads by name.
WORKLOADS: dict[str, Callable[..., Trace]] = {
    "sequential": sequential,
    "reverse": reverse,
    "strided": strided,
    "random": uniform_random,
    "zipf": zipf,
    "hotcold": hot_cold,
    "phases": phases,
    "multifile": multi_file,
    "program_start": program_start,
}


def workload_params(name: str) -> dict[str, Any]:
    """Parameters of a workload and their defaults (``seed`` excluded).

    Parameters
    ----------
    name : str
        A key of :data:`WORKLOADS`.

    Returns
    -------
    dict
        ``{parameter: default}``.
    """
    if name not in WORKLOADS:
        raise InputError(f"unknown workload {name!r}; valid: {', '.join(WORKLOADS)}")
    sig = inspect.signature(WORKLOADS[name])
    return {k: p.default for k, p in sig.parameters.items() if k != "seed"}


def make_workload(name: str, *, seed: int, **params: Any) -> Trace:
    """Generate a named workload.

    Parameters
    ----------
    name : str
        A key of :data:`WORKLOADS`.
    seed : int
        Seed (>= 0); equal ``(name, seed, params)`` give bit-identical traces.
    **params
        The workload's parameters (see each generator; unspecified ones take their defaults).

    Returns
    -------
    Trace
        The generated trace; ``meta`` holds ``name``, ``seed`` and ``params``.

    Raises
    ------
    fastfault.errors.InputError
        Unknown workload or parameter (the message lists the valid ones), or an invalid value.
    """
    valid = workload_params(name)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise InputError(f"workload {name!r}: unknown parameter(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
    return WORKLOADS[name](seed=_int("seed", seed, 0), **params)

"""Experiment files: TOML in, a validated list of simulation runs out.

An experiment file names the workloads, the knobs held fixed, the knobs swept, and how many
replicates (seeds) to run::

    [experiment]
    name = "fault_around"
    description = "fault_around_bytes from 4 KiB to 2 MiB"
    seed = 0                    # replicate r runs with seed + r ...
    replicates = 1              # ... or give the seeds: seeds = [0, 7, 42]

    [scale]
    default = 1                 # multiplies the size parameters of generated workloads
    params = ["npages", "n"]    # which workload parameters are sizes (default: SCALED_PARAMS)
    knobs = ["aging_interval"]  # knobs that count accesses and scale too (default: none)

    [fixed]
    profile = "linux-6.18"

    [sweep]                     # every list is an axis; the axes multiply (cartesian product)
    fault_around_bytes = ["4KiB", "64KiB", "2MiB"]

    [[sweep.zip]]               # a zip group: lists of equal length that vary together
    arch = ["x86_64", "arm64"]
    prefault = ["young", "old"]

    [[workloads]]               # a generated workload ...
    name = "zipf"
    params = { npages = 16384, n = 200000 }

    [[workloads]]               # ... or a recorded trace (path relative to this file)
    trace = "../tests/data/traces/cat.fftrace"

Every expanded point is checked before anything runs: knob types, sizes (``"64KiB"``), the
:class:`~fastfault.model.Config` and :class:`~fastfault.api.Layout` each point builds, simulator
extensions (a tiny :class:`~fastfault.model.Simulator` is constructed, not run) and workload
names and parameters. The first problem raises :class:`~fastfault.errors.InputError` with one
line naming the file, the key and the reason.

The knobs an experiment may set are listed once, in :data:`KNOBS`; add simulator extensions
(TLB, reclaim aging, cost model) there.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import json
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastfault.errors import InputError

__all__ = [
    "KNOBS",
    "SCALED_PARAMS",
    "Experiment",
    "Knob",
    "Point",
    "Run",
    "WorkloadSpec",
    "load_experiment",
    "parse_experiment",
]


# --------------------------------------------------------------------------------------------------
# The allow-list of knobs.
# --------------------------------------------------------------------------------------------------


def _as_size(value: Any) -> int:
    from fastfault.api import parse_size

    return parse_size(value, "size")


def _as_prefault(value: str) -> str | None:
    # TOML has no null: "arch" (or "default") means the architecture's own choice.
    return None if value in ("arch", "default") else value


def _as_orders(value: Mapping[str, Any]) -> dict[int, float]:
    out = {}
    for k, v in value.items():
        try:
            order = int(k)
        except ValueError:
            raise InputError(f"folio order {k!r} is not an integer 0..9") from None
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise InputError(f"weight of order {k} must be a number, got {v!r}")
        out[order] = float(v)
    return out


@dataclass(frozen=True)
class Knob:
    """One parameter an experiment may set.

    Attributes
    ----------
    types : tuple of type
        Python types the TOML value may have (``bool`` is never an ``int`` here).
    convert : callable or None
        Turns the TOML value into what :func:`fastfault.api.run` takes (sizes -> bytes).
    sim : bool
        Passed to the simulator as an extra keyword (``**sim_kwargs`` of :func:`fastfault.api.run`)
        rather than being a core argument; such knobs are also recorded as ``param_<name>`` columns.
    help : str
        One line for error messages and docs.
    """

    types: tuple[type, ...]
    convert: Callable[[Any], Any] | None = None
    sim: bool = False
    help: str = ""


#: Every knob an experiment may set, by the keyword :func:`fastfault.api.run` takes.
#: Core knobs are validated by building :class:`~fastfault.model.Config` and
#: :class:`~fastfault.api.Layout`; ``sim=True`` knobs are validated by constructing (not running)
#: a tiny :class:`~fastfault.model.Simulator` with them. To expose a new simulator option to
#: experiments and ``fastfault sweep``, add one line here.
KNOBS: dict[str, Knob] = {
    # fastfault.model.Config
    "profile": Knob((str,), help="kernel profile: linux-5.12, linux-6.6 or linux-6.18"),
    "arch": Knob((str,), help="x86_64, arm64 or arm64-nohaf"),
    "fault_around_bytes": Knob((int, str), _as_size, help='a size such as 4096, "64KiB" or "2MiB"'),
    "prefault": Knob((str,), _as_prefault, help='"young", "old" or "arch" (the architecture default)'),
    "thp_disabled": Knob((bool,), help="no PMD mappings"),
    # fastfault.api.Layout
    "thp_ratio": Knob((int, float), float, help="share of 2 MiB regions held by a PMD-size folio, 0..1"),
    "folio_orders": Knob((dict,), _as_orders, help="folio-order weights, e.g. { 0 = 0.5, 4 = 0.5 }"),
    "base_order": Knob((int,), help="order of the folios that are not THPs, 0..9"),
    "cached": Knob((int, float), float, help="fraction of each file in the page cache, 0..1"),
    # Simulator extensions (TLB model, reclaim aging, cost model): checked by building a tiny Simulator.
    "tlb": Knob((str,), sim=True, help='TLB preset: "auto" (per architecture), "none", zen4, ...'),
    "cost": Knob((str,), sim=True, help='cost model: "auto", "none", x86-64, arm64, ...'),
    "aging_interval": Knob((int,), sim=True, help="accesses between reclaim aging passes (0: no aging)"),
    "aging_policy": Knob((str,), sim=True, help="reclaim aging policy: lru or mglru"),
    "aging_evict": Knob((bool,), sim=True, help="aging evicts what it would reclaim (default: census only)"),
}

#: Workload parameters that are sizes or lengths, multiplied by the experiment's scale.
SCALED_PARAMS = (
    "npages",
    "n",
    "n_accesses",
    "accesses",
    "length",
    "pages",
    "file_pages",
    "size",
    "file_size",
    "hot_pages",
)

_TOP_KEYS = {"experiment", "scale", "fixed", "sweep", "workloads"}
_EXPERIMENT_KEYS = {"name", "description", "seed", "seeds", "replicates"}
_SCALE_KEYS = {"default", "params", "knobs"}
_WORKLOAD_KEYS = {"name", "trace", "params", "label"}


# --------------------------------------------------------------------------------------------------
# The validated experiment.
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkloadSpec:
    """One workload of an experiment: a generated workload or a recorded trace.

    Attributes
    ----------
    label : str
        Short name used in tables and figures (``label`` key, else the name or the trace's stem).
    name : str or None
        Generated workload (a key of :data:`fastfault.workloads.WORKLOADS`).
    trace : str or None
        Absolute path of a ``.fftrace`` file.
    params : dict
        Generator parameters after scaling.
    """

    label: str
    name: str | None = None
    trace: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def workload(self) -> str:
        """What :func:`fastfault.api.run` takes as ``workload``."""
        return self.trace if self.trace is not None else str(self.name)


@dataclass(frozen=True)
class Point:
    """One point of the parameter space: a workload and a value for every knob set.

    Attributes
    ----------
    point : int
        Position in expansion order (workloads outermost, then the axes in file order).
    workload : WorkloadSpec
    knobs : dict
        Keyword arguments of :func:`fastfault.api.run` (converted: sizes in bytes).
    """

    point: int
    workload: WorkloadSpec
    knobs: dict[str, Any]


@dataclass(frozen=True)
class Run:
    """One simulation: a point and a replicate (the unit of work, of durability and of a table row).

    Attributes
    ----------
    point, replicate, seed : int
    workload : str
        Generated workload name or absolute trace path.
    workload_label : str
    workload_params : dict
    knobs : dict
    """

    point: int
    replicate: int
    seed: int
    workload: str
    workload_label: str
    workload_params: dict[str, Any]
    knobs: dict[str, Any]

    @property
    def key(self) -> tuple[int, int]:
        return (self.point, self.replicate)

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`fastfault.api.run` (``workload`` included)."""
        return {
            "workload": self.workload,
            "workload_params": dict(self.workload_params),
            "seed": self.seed,
            **self.knobs,
        }

    def describe(self) -> dict[str, Any]:
        """A JSON-able description (what ``plan.json`` and the plan hash hold)."""
        return {
            "point": self.point,
            "replicate": self.replicate,
            "seed": self.seed,
            "workload": self.workload,
            "workload_label": self.workload_label,
            "workload_params": self.workload_params,
            "knobs": {k: (sorted(v.items()) if isinstance(v, dict) else v) for k, v in self.knobs.items()},
        }


@dataclass(frozen=True)
class Experiment:
    """A validated, expanded experiment.

    Attributes
    ----------
    name, description : str
    path : str
        The experiment file (``"<string>"`` when parsed from text).
    sha256 : str
        Of the experiment file's bytes.
    scale : float
        The factor applied to the size parameters of generated workloads.
    seeds : tuple of int
        Seed of each replicate.
    points : tuple of Point
    axes : dict
        Swept knob -> its values (zip groups included), in file order; for plots and notebooks.
    fixed : dict
        Knobs held fixed.
    source : str
        The experiment file's text.
    """

    name: str
    description: str
    path: str
    sha256: str
    scale: float
    seeds: tuple[int, ...]
    points: tuple[Point, ...]
    axes: dict[str, list[Any]]
    fixed: dict[str, Any]
    source: str = field(repr=False, default="")

    @property
    def replicates(self) -> int:
        return len(self.seeds)

    def runs(self) -> list[Run]:
        """Every run, sorted by (point, replicate)."""
        return [
            Run(
                point=p.point,
                replicate=r,
                seed=seed,
                workload=p.workload.workload,
                workload_label=p.workload.label,
                workload_params=dict(p.workload.params),
                knobs=dict(p.knobs),
            )
            for p in self.points
            for r, seed in enumerate(self.seeds)
        ]

    def plan(self) -> list[dict[str, Any]]:
        """JSON-able description of every run."""
        return [r.describe() for r in self.runs()]

    @property
    def plan_sha256(self) -> str:
        """Hash of the expanded runs: equal plans give equal tables."""
        blob = json.dumps(self.plan(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()


# --------------------------------------------------------------------------------------------------
# Parsing.
# --------------------------------------------------------------------------------------------------


class _Where:
    """Builds ``file: key: reason`` messages."""

    def __init__(self, path: str):
        self.path = path

    def error(self, key: str, reason: str) -> InputError:
        reason = str(reason)
        leaf = key.rsplit(".", 1)[-1].split("[", 1)[0]
        if reason.startswith(f"{leaf}: "):  # the model's own messages already name the knob
            reason = reason[len(leaf) + 2 :]
        return InputError(f"{self.path}: {key}: {reason}")


def _type_name(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _check_keys(w: _Where, table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            prefix = f"{where}." if where else ""
            raise w.error(f"{prefix}{key}", f"unknown key (expected one of {', '.join(sorted(allowed))})")


def _table(w: _Where, doc: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise w.error(key, f"expected a table, got {_type_name(value)}")
    return value


def _knob_value(w: _Where, key: str, name: str, value: Any) -> Any:
    """Type-check and convert one knob value."""
    if name not in KNOBS:
        raise w.error(key, f"unknown knob (one of {', '.join(KNOBS)})")
    knob = KNOBS[name]
    ok = isinstance(value, knob.types) and not (isinstance(value, bool) and bool not in knob.types)
    if not ok:
        expected = " or ".join(_type_name(t()) for t in knob.types)
        raise w.error(key, f"expected {expected} ({knob.help}), got {_type_name(value)} {value!r}")
    if knob.convert is None:
        return value
    try:
        return knob.convert(value)
    except InputError as err:
        raise w.error(key, str(err)) from None


def _scale_value(w: _Where, key: str, value: Any, scale: float) -> Any:
    if scale == 1:
        return value
    if isinstance(value, bool):
        raise w.error(key, "is a boolean; it cannot be scaled (remove it from scale.params)")
    if isinstance(value, int):
        return max(1, int(round(value * scale)))
    if isinstance(value, str):
        try:
            return max(1, int(round(_as_size(value) * scale)))
        except InputError:
            raise w.error(key, f"{value!r} is not a size; it cannot be scaled") from None
    if isinstance(value, float):
        return value * scale
    raise w.error(key, f"{_type_name(value)} cannot be scaled (remove it from scale.params)")


def _resolve_trace(w: _Where, key: str, value: Any, base: Path) -> str:
    if not isinstance(value, str) or not value:
        raise w.error(key, f"expected a path to a .fftrace file, got {value!r}")
    for cand in (base / value, Path(value)):
        if cand.is_file():
            return str(cand.resolve())
    raise w.error(key, f"no such trace file {value!r} (looked relative to {base} and the current directory)")


def _check_trace_header(w: _Where, key: str, path: str) -> None:
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(bytes(z["header"]).decode())
    except Exception as err:  # noqa: BLE001 - any failure means "not a trace"
        raise w.error(key, f"{path} is not a readable .fftrace file ({type(err).__name__}: {err})") from None
    if header.get("format") != "fftrace":
        raise w.error(key, f"{path} is not a .fftrace file (header format {header.get('format')!r})")


def _workload_registry():
    try:
        from fastfault import workloads
    except ModuleNotFoundError as err:
        if err.name and err.name.startswith("fastfault.workloads"):
            return None
        raise
    return workloads


_PARAM_IN_MSG = re.compile(r"workload parameter (\w+)")


def _check_workload(w: _Where, key: str, name: str, params: dict[str, Any], seed: int) -> None:
    """Name and parameters of a generated workload: checked against the generator's signature,
    then the workload is generated once (the generators validate their values; no simulation runs)."""
    mod = _workload_registry()
    if mod is None:
        raise w.error(f"{key}.name", "generated workloads are not available (fastfault.workloads is missing)")
    registry = mod.WORKLOADS
    if name not in registry:
        raise w.error(f"{key}.name", f"unknown workload {name!r} (one of {', '.join(registry)})")
    try:
        sig = inspect.signature(registry[name])
        valid = [p for p, v in sig.parameters.items() if p != "seed" and v.kind is not v.VAR_KEYWORD]
        open_ended = any(v.kind is v.VAR_KEYWORD for v in sig.parameters.values())
    except (TypeError, ValueError):
        valid, open_ended = [], True
    if not open_ended:
        for pname in params:
            if pname not in valid:
                raise w.error(
                    f"{key}.params.{pname}",
                    f"workload {name!r} has no such parameter (it takes {', '.join(valid) or 'none'})",
                )
    try:
        mod.make_workload(name, seed=seed, **params)
    except InputError as err:
        m = _PARAM_IN_MSG.search(str(err))
        pkey = f"{key}.params.{m.group(1)}" if m and m.group(1) in params else f"{key}.params"
        raise w.error(pkey, str(err)) from None


def _parse_workloads(
    w: _Where, doc: Mapping[str, Any], base: Path, scale: float, scaled: tuple[str, ...], seed: int
) -> list[WorkloadSpec]:
    entries = doc.get("workloads")
    if entries is None:
        raise w.error("workloads", "missing: add at least one [[workloads]] table with a name or a trace")
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise w.error("workloads", "expected one or more [[workloads]] tables")
    specs: list[WorkloadSpec] = []
    labels: set[str] = set()
    for i, entry in enumerate(entries):
        key = f"workloads[{i}]"
        _check_keys(w, entry, _WORKLOAD_KEYS, key)
        has_name, has_trace = "name" in entry, "trace" in entry
        if has_name == has_trace:
            raise w.error(key, "give exactly one of name (a generated workload) or trace (a .fftrace file)")
        params = entry.get("params", {})
        if not isinstance(params, dict):
            raise w.error(f"{key}.params", f"expected a table, got {_type_name(params)}")
        label = entry.get("label")
        if label is not None and (not isinstance(label, str) or not label):
            raise w.error(f"{key}.label", f"expected a non-empty string, got {label!r}")
        if has_trace:
            if params:
                raise w.error(f"{key}.params", "a trace takes no parameters")
            path = _resolve_trace(w, f"{key}.trace", entry["trace"], base)
            _check_trace_header(w, f"{key}.trace", path)
            spec = WorkloadSpec(label=label or Path(path).name.removesuffix(".fftrace"), trace=path)
        else:
            name = entry["name"]
            if not isinstance(name, str) or not name:
                raise w.error(f"{key}.name", f"expected a workload name, got {name!r}")
            scaled_params = {}
            for k, v in params.items():
                scaled_params[k] = _scale_value(w, f"{key}.params.{k}", v, scale) if k in scaled else v
            params = scaled_params
            _check_workload(w, key, name, params, seed)
            spec = WorkloadSpec(label=label or name, name=name, params=params)
        if spec.label in labels:
            raise w.error(
                f"{key}.label",
                f"label {spec.label!r} is used twice; give each workload a distinct label",
            )
        labels.add(spec.label)
        specs.append(spec)
    return specs


Axis = list[tuple[str, str, list]]  # knobs varied together: (knob, key, values)


def _parse_axes(w: _Where, doc: Mapping[str, Any]) -> tuple[dict[str, Any], list[Axis]]:
    """``[fixed]`` -> {knob: value}; ``[sweep]`` -> axes (each: the knobs that vary together)."""
    fixed_raw = _table(w, doc, "fixed")
    fixed = {k: _knob_value(w, f"fixed.{k}", k, v) for k, v in fixed_raw.items()}
    sweep = _table(w, doc, "sweep")
    axes: list[list[tuple[str, str, list]]] = []
    seen: dict[str, str] = {k: f"fixed.{k}" for k in fixed}

    def claim(name: str, key: str) -> None:
        if name in seen:
            raise w.error(key, f"{name} is already set by {seen[name]}")
        seen[name] = key

    def values(name: str, key: str, raw: Any) -> list:
        if not isinstance(raw, list):
            raise w.error(
                key,
                f"expected a list of values to sweep, got {_type_name(raw)} (put single values in [fixed])",
            )
        if not raw:
            raise w.error(key, "empty list: give at least one value")
        return [_knob_value(w, f"{key}[{j}]", name, v) for j, v in enumerate(raw)]

    for name, raw in sweep.items():
        if name == "zip":
            groups = raw if isinstance(raw, list) else [raw]
            for g, group in enumerate(groups):
                gkey = f"sweep.zip[{g}]"
                if not isinstance(group, dict) or not group:
                    raise w.error(gkey, "expected a table of equal-length lists ([[sweep.zip]])")
                axis = []
                for k, v in group.items():
                    key = f"{gkey}.{k}"
                    claim(k, key)
                    axis.append((k, key, values(k, key, v)))
                lengths = {len(vals) for _, _, vals in axis}
                if len(lengths) > 1:
                    detail = ", ".join(f"{k} has {len(v)}" for k, _, v in axis)
                    raise w.error(gkey, f"the lists of a zip group must have equal lengths ({detail})")
                axes.append(axis)
            continue
        key = f"sweep.{name}"
        claim(name, key)
        axes.append([(name, key, values(name, key, raw))])
    return fixed, axes


def _accepted_keywords() -> tuple[set[str], bool]:
    """Keywords :func:`fastfault.api.run` takes, and whether it takes any (``**kwargs``)."""
    from fastfault import api

    params = inspect.signature(api.run).parameters
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    return set(params), var_kw


def _tiny_simulator(config, sim_kwargs: dict[str, Any]):
    import numpy as np

    from fastfault.model import FileSpec, Simulator, VmaSpec

    f = FileSpec.from_folio_sizes(np.ones(16, dtype=np.int64))
    return Simulator([f], [VmaSpec(start=0x7F0000000000, pages=16)], config, **sim_kwargs)


def _blame(w: _Where, origin: Mapping[str, str], err: Exception, candidates: list[str]) -> InputError:
    """The error of a model check, attributed to the key (of those that built it) it names."""
    msg = str(err)
    for k in candidates:
        if msg.startswith(f"{k}:"):
            return w.error(origin.get(k, k), msg)
    keys = [origin.get(k, k) for k in candidates] or ["fixed"]
    return w.error(keys[0] if len(keys) == 1 else " + ".join(keys), msg)


def _validate_points(w: _Where, points: list[Point], origins: list[dict[str, str]]) -> None:
    """Build the Config and Layout of every point (and a tiny Simulator per distinct sim-knob set)."""
    import numpy as np

    from fastfault.api import Layout
    from fastfault.model import Config, folio_sizes_from_orders

    config_fields = ("profile", "arch", "fault_around_bytes", "prefault", "thp_disabled")
    layout_fields = ("thp_ratio", "folio_orders", "base_order", "cached")
    accepted, any_keyword = _accepted_keywords()
    checked: set[str] = set()
    for p, origin in zip(points, origins, strict=True):
        for k in p.knobs:
            if k not in accepted and not any_keyword:
                msg = f"this fastfault has no {k!r} option yet (fastfault.api.run does not accept it)"
                raise w.error(origin[k], msg)
        cfg_kw = {k: p.knobs[k] for k in config_fields if k in p.knobs}
        lay_kw = {k: p.knobs[k] for k in layout_fields if k in p.knobs}
        sim_kw = {k: v for k, v in p.knobs.items() if KNOBS[k].sim}
        ck = "C" + json.dumps(cfg_kw, sort_keys=True, default=str)
        if ck not in checked:
            try:
                Config(**cfg_kw)
            except InputError as err:
                raise _blame(w, origin, err, list(cfg_kw)) from None
            checked.add(ck)
        lk = "L" + json.dumps(lay_kw, sort_keys=True, default=str)
        if lk not in checked:
            try:
                layout = Layout(**lay_kw)
            except InputError as err:
                raise _blame(w, origin, err, list(lay_kw)) from None
            if layout.folio_orders is not None:
                try:
                    folio_sizes_from_orders(0, layout.weights(), np.random.default_rng(0))
                except InputError as err:
                    raise w.error(origin["folio_orders"], str(err)) from None
            checked.add(lk)
        sk = "S" + json.dumps({"c": cfg_kw, "s": sim_kw}, sort_keys=True, default=str)
        if not sim_kw or sk in checked:
            continue
        try:
            _tiny_simulator(Config(**cfg_kw), sim_kw)
        except (InputError, TypeError, ValueError) as err:
            raise _blame(w, origin, err, list(sim_kw)) from None
        checked.add(sk)


def _seeds(w: _Where, exp: Mapping[str, Any]) -> tuple[int, ...]:
    if "seeds" in exp:
        if "seed" in exp or "replicates" in exp:
            raise w.error("experiment.seeds", "give either seeds, or seed and replicates, not both")
        seeds = exp["seeds"]
        if (
            not isinstance(seeds, list)
            or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
        ):
            raise w.error(
                "experiment.seeds",
                f"expected a non-empty list of non-negative integers, got {seeds!r}",
            )
        if len(set(seeds)) != len(seeds):
            raise w.error("experiment.seeds", "seeds repeat; every replicate needs its own seed")
        return tuple(seeds)
    seed = exp.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise w.error("experiment.seed", f"expected a non-negative integer, got {seed!r}")
    reps = exp.get("replicates", 1)
    if not isinstance(reps, int) or isinstance(reps, bool) or reps < 1:
        raise w.error("experiment.replicates", f"expected a positive integer, got {reps!r}")
    return tuple(seed + r for r in range(reps))


def parse_experiment(
    text: str,
    *,
    path: str = "<string>",
    base_dir: str | os.PathLike[str] | None = None,
    scale: float | None = None,
    overrides: Mapping[str, Any] | None = None,
    seed: int | None = None,
) -> Experiment:
    """Parse and validate an experiment from TOML text.

    Parameters
    ----------
    text : str
        The TOML document.
    path : str
        Named in error messages.
    base_dir : path-like, optional
        Directory trace paths are relative to (default: the current directory).
    scale : float, optional
        Overrides ``[scale] default``: multiplies the size parameters of generated workloads.
    overrides : mapping, optional
        Knob values that replace ``[fixed]`` values and collapse a swept axis to one value
        (the CLI's ``--profile``, ``--arch``, ``--fault-around``, ``--prefault``).
    seed : int, optional
        Replaces ``experiment.seed`` (replicate r runs with ``seed + r``).

    Returns
    -------
    Experiment

    Raises
    ------
    InputError
        ``"<path>: <key>: <reason>"`` for the first problem found; nothing has run.
    """
    w = _Where(path)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"{path}: not valid TOML ({err})") from None
    _check_keys(w, doc, _TOP_KEYS, "")
    exp = _table(w, doc, "experiment")
    _check_keys(w, exp, _EXPERIMENT_KEYS, "experiment")
    exp_name = exp.get("name", Path(path).stem)
    if not isinstance(exp_name, str) or not exp_name:
        raise w.error("experiment.name", f"expected a non-empty string, got {exp_name!r}")
    description = exp.get("description", "")
    if not isinstance(description, str):
        raise w.error("experiment.description", f"expected a string, got {_type_name(description)}")
    if seed is not None:
        exp = {k: v for k, v in exp.items() if k not in ("seed", "seeds")} | {"seed": int(seed)}
    seeds = _seeds(w, exp)

    sc = _table(w, doc, "scale")
    _check_keys(w, sc, _SCALE_KEYS, "scale")
    default_scale = sc.get("default", 1)
    if isinstance(default_scale, bool) or not isinstance(default_scale, int | float) or not default_scale > 0:
        raise w.error("scale.default", f"expected a positive number, got {default_scale!r}")
    bad_scale = not isinstance(scale, int | float) or not scale > 0 or not math.isfinite(scale)
    if scale is not None and bad_scale:
        raise InputError(f"{path}: --scale: expected a positive number, got {scale!r}")
    eff_scale = float(default_scale if scale is None else scale)
    scaled = sc.get("params", list(SCALED_PARAMS))
    if not isinstance(scaled, list) or not all(isinstance(s, str) for s in scaled):
        raise w.error("scale.params", f"expected a list of workload parameter names, got {scaled!r}")

    fixed, axes = _parse_axes(w, doc)
    scaled_knobs = sc.get("knobs", [])
    if not isinstance(scaled_knobs, list) or not all(k in KNOBS for k in scaled_knobs):
        raise w.error("scale.knobs", f"expected a list of knob names to scale, got {scaled_knobs!r}")
    for k in scaled_knobs:  # e.g. aging_interval: a count of accesses that should follow the workload size
        if k in fixed:
            fixed[k] = _scale_value(w, f"fixed.{k}", fixed[k], eff_scale)
        for axis in axes:
            for i, (knob, key, vals) in enumerate(axis):
                if knob == k:
                    axis[i] = (knob, key, [_scale_value(w, key, v, eff_scale) for v in vals])
    for k, v in (overrides or {}).items():
        if v is None:
            continue
        key = f"--{k.replace('_', '-')}"
        val = _knob_value(_Where(path), key, k, v)
        for axis in axes:
            if any(name == k for name, _, _ in axis):
                if len(axis) > 1:
                    raise w.error(
                        key,
                        f"{k} varies with other knobs in a [[sweep.zip]] group; it cannot be overridden",
                    )
                axes.remove(axis)
                break
        fixed[k] = val
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    workloads = _parse_workloads(w, doc, base, eff_scale, tuple(scaled), seeds[0])

    overridden = {k for k, v in (overrides or {}).items() if v is not None}
    fixed_origin = {k: (f"--{k.replace('_', '-')}" if k in overridden else f"fixed.{k}") for k in fixed}
    points: list[Point] = []
    origins: list[dict[str, str]] = []
    combos = list(itertools.product(*[range(len(axis[0][2])) for axis in axes]))
    for wl in workloads:
        for combo in combos:
            knobs = dict(fixed)
            origin = dict(fixed_origin)
            for axis, j in zip(axes, combo, strict=True):
                for knob, key, vals in axis:
                    knobs[knob] = vals[j]
                    origin[knob] = f"{key}[{j}]"
            points.append(Point(point=len(points), workload=wl, knobs=knobs))
            origins.append(origin)
    _validate_points(w, points, origins)
    axes_out = {knob: list(vals) for axis in axes for knob, _, vals in axis}
    return Experiment(
        name=exp_name,
        description=description,
        path=path,
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        scale=eff_scale,
        seeds=seeds,
        points=tuple(points),
        axes=axes_out,
        fixed=fixed,
        source=text,
    )


def load_experiment(
    path: str | os.PathLike[str],
    *,
    scale: float | None = None,
    overrides: Mapping[str, Any] | None = None,
    seed: int | None = None,
) -> Experiment:
    """Read, expand and validate ``path`` (see :func:`parse_experiment`).

    Trace paths in the file are relative to the file's directory (or the current directory).
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as err:
        raise InputError(f"{path}: cannot read the experiment file ({err.strerror})") from None
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    exp = parse_experiment(
        text,
        path=str(path),
        base_dir=p.parent,
        scale=scale,
        overrides=overrides,
        seed=seed,
    )
    # sha256 of the bytes on disk (identical to the text's for UTF-8 without a BOM)
    return Experiment(**{**exp.__dict__, "sha256": hashlib.sha256(raw).hexdigest()})

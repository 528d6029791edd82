"""Replay live-kernel cases through the simulator and report every field that differs.

A case (see ``FORMAT.md``) is a file with a recorded page-cache layout, one
mapping, two touch phases and what the kernel reported after each. The
simulator is configured with the same inputs, runs phase 1, clears every
accessed bit (``clear_refs``) and TLB entry, runs phase 2, and is compared after
each phase: faults, the mapped-page bitmap, Rss, Referenced and FilePmdMapped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fastfault.errors import InputError
from fastfault.kernel.cases import Case, case_json_paths, load_case

#: Scalar fields compared per phase: (simulator name, FORMAT.md name).
PHASE_FIELDS = ("minflt", "majflt", "Rss", "Referenced", "FilePmdMapped")


@dataclass
class CaseResult:
    """Outcome of one case.

    Attributes
    ----------
    name : str
    kind : str
        ``layout/pattern`` plus ``shared``/``private``, ``rw`` for cases with stores.
    diffs : list of str
        One line per differing field, e.g. ``phase1.minflt: kernel 512, simulator 513``.
    fields : dict
        ``"phase1.minflt"`` -> (kernel, simulator) for every compared field.
    """

    name: str
    kind: str
    diffs: list[str] = field(default_factory=list)
    fields: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def match(self) -> bool:
        return not self.diffs


def case_kind(case: Case) -> str:
    """A short label grouping similar cases: layout, pattern, mapping type, stores, alignment."""
    parts = [case.layout, case.pattern, "private" if case.private else "shared"]
    if case.has_writes:
        parts.append("rw")
    if not case.vma_aligned_2m:
        parts.append("unaligned")
    if case.offset_pages:
        parts.append("offset")
    if case.vma_pages + case.offset_pages < case.npages:
        parts.append("short")
    return "/".join(parts)


def simulate_case(case: Case, profile: str = "linux-6.18", tlb=None):
    """Run a case's two phases through a fresh simulator.

    Parameters
    ----------
    case : Case
    profile : str
        Kernel profile to simulate.
    tlb : object, optional
        A TLB hierarchy spec for :class:`~fastfault.model.Simulator` (flushed between phases).

    Returns
    -------
    list of dict
        Per phase: ``minflt``, ``majflt``, ``Rss``, ``Referenced``, ``FilePmdMapped`` and
        ``present`` (bool, (vma_pages,)).
    """
    from fastfault.model import Config, FileSpec, Simulator, VmaSpec

    arch = case.arch if case.arch in ("x86_64", "arm64", "arm64-nohaf") else "x86_64"
    if case.arch == "aarch64":
        arch = "arm64"
    config = Config(profile=profile, arch=arch, fault_around_bytes=case.fault_around_bytes)
    file = FileSpec.from_folio_sizes(case.folio_size, name=case.name)
    writes = (case.write1 is not None and case.write1.any()) or (case.write2 is not None and case.write2.any())
    vma = VmaSpec(
        start=case.vma_start,
        pages=case.vma_pages,
        pgoff=case.offset_pages,
        shared=not case.private,
        writable=bool(writes) or bool(case.meta.get("writable", False)),
    )
    kwargs = {} if tlb is None else {"tlb": tlb}
    sim = Simulator([file], [vma], config, **kwargs)
    out = []
    before = sim.counters()
    for phase, (trace, write) in enumerate(((case.trace1, case.write1), (case.trace2, case.write2))):
        if phase == 1:
            sim.clear_refs(flush_tlb=True)  # the recorder sweeps 128 MiB so that no translation survives
        sim.run_relative(trace, write)
        after = sim.counters()
        smaps = sim.smaps()
        out.append(
            {
                "minflt": after["minflt"] - before["minflt"],
                "majflt": after["majflt"] - before["majflt"],
                "Rss": smaps["Rss"],
                "Referenced": smaps["Referenced"],
                "FilePmdMapped": smaps["FilePmdMapped"],
                "present": sim.present(),
            }
        )
        before = after
    return out


def check_case(case: Case, profile: str = "linux-6.18", tlb=None) -> CaseResult:
    """Compare one case with the simulator, field by field."""
    result = CaseResult(case.name, case_kind(case))
    sim = simulate_case(case, profile, tlb)
    for i, (kernel, got) in enumerate(zip(case.phases(), sim, strict=True), start=1):
        kvals = {
            "minflt": kernel.minflt,
            "majflt": kernel.majflt,
            "Rss": kernel.rss,
            "Referenced": kernel.referenced,
            "FilePmdMapped": kernel.file_pmd_mapped,
        }
        for name in PHASE_FIELDS:
            key = f"phase{i}.{name}"
            result.fields[key] = (int(kvals[name]), int(got[name]))
            if kvals[name] != got[name]:
                result.diffs.append(f"{key}: kernel {kvals[name]}, simulator {got[name]}")
        kp = case.present1 if i == 1 else case.present2
        differ = np.flatnonzero(kp != got["present"])
        key = f"phase{i}.present"
        result.fields[key] = (int(kp.sum()), int(got["present"].sum()))
        if differ.size:
            first = ", ".join(str(int(x)) for x in differ[:5])
            more = f" (+{differ.size - 5} more)" if differ.size > 5 else ""
            result.diffs.append(f"{key}: {differ.size} pages differ, first at mapping pages {first}{more}")
    return result


def check_dir(folder: str | os.PathLike, profile: str = "linux-6.18", tlb=None) -> list[CaseResult]:
    """Check every case of a folder (all are validated before any is run)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder of kernel cases")
    paths = case_json_paths(folder)
    if not paths:
        raise InputError(f"{folder}: no cases (NAME.json + NAME.npz) found")
    cases = [load_case(p) for p in paths]
    return [check_case(c, profile, tlb) for c in cases]


def summarize(results: list[CaseResult]) -> dict:
    """Per field (phases compared, phases differing, largest difference) and per case kind (every tag of
    :func:`case_kind`: layout, pattern, shared/private, rw, unaligned, offset, short): cases matched."""
    by_field: dict[str, dict[str, int]] = {}
    by_kind: dict[str, dict[str, int]] = {}
    for r in results:
        for key, (k, s) in r.fields.items():
            name = key.split(".", 1)[1]
            entry = by_field.setdefault(name, {"cases": 0, "differ": 0, "max_abs_diff": 0})
            entry["cases"] += 1
            if k != s:
                entry["differ"] += 1
                entry["max_abs_diff"] = max(entry["max_abs_diff"], abs(k - s))
        for tag in r.kind.split("/"):
            e = by_kind.setdefault(tag, {"cases": 0, "matched": 0})
            e["cases"] += 1
            e["matched"] += int(r.match)
    return {"by_field": by_field, "by_kind": by_kind}

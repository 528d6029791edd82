"""Options shared by the subcommands, so that ``run``, ``sweep`` and ``kernel`` speak one vocabulary."""

from __future__ import annotations

import typer

PROFILES = ("linux-6.18", "linux-6.6", "linux-5.12")
ARCHES = ("x86_64", "arm64", "arm64-nohaf")

Profile = typer.Option("linux-6.18", "--profile", help=f"Kernel whose fault path is simulated: {', '.join(PROFILES)}.")
Arch = typer.Option(
    "x86_64",
    "--arch",
    help="x86_64 (hardware accessed bit, young prefault), arm64 (hardware AF, old prefault), "
    "arm64-nohaf (no hardware AF: old PTEs fault).",
)
FaultAround = typer.Option(
    "64KiB", "--fault-around", help="fault_around_bytes as written to debugfs (4096, 64KiB, 2MiB, ...)."
)
Prefault = typer.Option(None, "--prefault", help="Override arch_wants_old_prefaulted_pte(): young or old.")
Seed = typer.Option(0, "--seed", help="Seeds the workload and the page-cache layout.")
Json = typer.Option(False, "--json", help="Print one JSON object instead of the readable summary.")


def _tlb_help() -> str:
    from fastfault.tlb.presets import TLB_PRESETS

    return (
        f"TLB hierarchy: a preset ({', '.join(TLB_PRESETS)}), auto (zen4 on x86_64, neoverse-n1 on arm64), "
        "or a TOML file with a [tlb] table."
    )


def _cost_help() -> str:
    from fastfault.cost import COST_PRESETS

    return f"Cost model (cycles per event): {', '.join(COST_PRESETS)}, auto (follows --tlb) or none."


Tlb = typer.Option("auto", "--tlb", help=_tlb_help())
Cost = typer.Option("auto", "--cost", help=_cost_help())
AgingInterval = typer.Option(
    0, "--aging-interval", help="Run a reclaim aging pass every N accesses (0: never; the census is still reported)."
)
AgingPolicy = typer.Option(
    "lru", "--aging-policy", help="lru (folio_referenced + folio_check_references) or mglru (64-PTE look-around)."
)
AgingEvict = typer.Option(False, "--aging-evict", help="Aging passes unmap the folios they would reclaim.")

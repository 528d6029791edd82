"""The standard figures of a sweep, drawn from its tidy ``results.parquet``.

Every figure function takes the results DataFrame and returns a
:class:`matplotlib.figure.Figure` (no pyplot state: safe in scripts, notebooks and threads), or
raises :class:`SkipFigure` with a one-line reason when the table lacks what it needs (a column a
simulator extension has not produced yet, or a parameter that was not swept).

Conventions: replicates are averaged (error bars: standard deviation across replicates); every
parameter that varies and is not on an axis or a facet becomes a series (a line or a bar colour);
sizes that double are drawn on a log2 axis labelled ``4K, 64K, 2M``; one style
(``fastfault.mplstyle``: Okabe-Ito colours, cividis maps) everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "FIGURES",
    "STYLE",
    "SkipFigure",
    "access_flag_faults",
    "cost_breakdown",
    "false_young",
    "fault_around_heatmap",
    "fault_around_tradeoff",
    "faults_vs_fault_around",
    "format_bytes",
    "kernel_profiles",
    "mapping_cost",
    "pmd_mappings",
    "reclaim_aging",
    "save_figures",
    "style",
    "tlb_misses",
]

#: The shared Matplotlib style file.
STYLE = Path(__file__).with_name("fastfault.mplstyle")

#: Okabe-Ito colours in the order of the style's cycle.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
_DASHES = ["-", "--", ":", "-."]

FA = "param_fault_around_bytes"
THP = "param_thp_ratio"
WL = "workload_label"

#: Parameters never used to split series (identity and seeds).
_NOT_SERIES = {"param_seed", "param_workload", "workload_label", "point", "replicate"}
_NAMES = {
    "param_fault_around_bytes": "fault_around",
    "param_thp_ratio": "THP share",
    "param_base_order": "base order",
    "param_thp_disabled": "THP disabled",
    "param_folio_orders": "folio orders",
}
_SELF_EXPLANATORY = {
    "param_arch",
    "param_prefault",
    "param_profile",
    "param_folio_orders",
    "param_cached",
    WL,
}


class SkipFigure(Exception):
    """A figure cannot be drawn from this table; the message says why."""


def style():
    """A context manager applying ``fastfault.mplstyle``: ``with style(): ...``."""
    import matplotlib.style

    return matplotlib.style.context(str(STYLE))


# --------------------------------------------------------------------------------------------------
# Helpers.
# --------------------------------------------------------------------------------------------------


def format_bytes(n: float) -> str:
    """``4096 -> "4K"``, ``65536 -> "64K"``, ``2097152 -> "2M"`` (binary units)."""
    n = float(n)
    for unit, size in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= size:
            v = n / size
            return f"{v:.0f}{unit}" if v.is_integer() else f"{v:.3g}{unit}"
    return f"{n:.0f}"


def _need(df, *cols: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise SkipFigure(f"the results have no {', '.join(missing)} column{'s' if len(missing) > 1 else ''}")


def _vary(df, col: str, what: str) -> list:
    _need(df, col)
    vals = sorted(df[col].dropna().unique().tolist())
    if len(vals) < 2:
        raise SkipFigure(f"{what} was not swept (one value: {vals[0] if vals else 'none'})")
    return vals


def _series_cols(df, exclude: Sequence[str]) -> list[str]:
    """Swept parameters not in ``exclude``, without those another one determines (``tlb = "auto"``
    follows ``arch``): the columns whose combinations tell runs apart."""
    cols = []
    for c in df.columns:
        if c in exclude or c in _NOT_SERIES:
            continue
        # workload parameters (param_wl_*) belong to the workload, which is a facet or a series already
        if c.startswith("param_") and not c.startswith("param_wl_") and df[c].nunique(dropna=False) > 1:
            cols.append(c)
    for c in reversed(list(cols)):
        others = [o for o in cols if o != c]
        if others and (df.groupby(others, dropna=False)[c].nunique(dropna=False) <= 1).all():
            cols.remove(c)
    return cols


def _fmt_orders(text: str) -> str:
    import json

    try:
        orders = {int(k): float(w) for k, w in json.loads(text).items()}
    except (ValueError, TypeError, AttributeError):
        return str(text)
    total = sum(orders.values()) or 1.0
    if len(orders) == 1:
        return f"order-{next(iter(orders))} folios only"
    return "folio orders " + " ".join(f"{o}:{100 * w / total:.0f}%" for o, w in sorted(orders.items()))


def _fmt_value(col: str, v: Any) -> str:
    if col == "param_folio_orders":
        return _fmt_orders(v)
    if col == "param_cached":
        return f"{100 * float(v):.0f}% cached"
    if col == FA:
        return format_bytes(v)
    if col == THP:
        return "unset" if v < 0 else f"{100 * v:.0f}%"
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v)


def _label(cols: Sequence[str], key) -> str:
    if not cols:
        return ""
    key = key if isinstance(key, tuple) else (key,)
    parts = []
    for c, v in zip(cols, key, strict=True):
        val = _fmt_value(c, v)
        parts.append(val if c in _SELF_EXPLANATORY else f"{_NAMES.get(c, c.removeprefix('param_'))}={val}")
    return ", ".join(parts)


def _mean_std(df, keys: list[str], metric: str):
    g = df.groupby(keys, sort=True, dropna=False)[metric]
    out = g.agg(["mean", "std", "count"]).reset_index()
    out["std"] = out["std"].fillna(0.0)
    return out


def _grid(n: int, ncols_max: int = 3, panel=(3.9, 3.0)):
    from matplotlib.figure import Figure

    ncols = min(n, ncols_max)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(panel[0] * ncols + 1.6, panel[1] * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _log2_bytes_axis(ax, values: Sequence[float], axis: str = "x") -> None:
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    a = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log", base=2)
    vals = sorted(set(float(v) for v in values))
    if len(vals) > 8:  # keep tick labels legible: every other power of two
        vals = vals[:: math.ceil(len(vals) / 6)] + (
            [vals[-1]] if vals[-1] not in vals[:: math.ceil(len(vals) / 6)] else []
        )
    a.set_major_locator(FixedLocator(vals))
    a.set_minor_locator(NullLocator())
    a.set_major_formatter(FuncFormatter(lambda v, _pos: format_bytes(v)))


def _line_style(i: int, n: int) -> dict[str, Any]:
    """Colour, marker, dash and width of series ``i`` of ``n``: earlier series are drawn wider and with
    bigger markers, so series that coincide (a common finding) stay visible under later ones."""
    shrink = (n - 1 - i) / max(n - 1, 1) if n > 1 else 0.0
    return {
        "color": PALETTE[i % len(PALETTE)],
        "marker": _MARKERS[i % len(_MARKERS)],
        "linestyle": _DASHES[i % len(_DASHES)] if n > 1 else "-",
        "linewidth": 1.3 + 1.6 * shrink,
        "markersize": 3.5 + 4.0 * shrink,
    }


def _axis_labels(fig, axes, xlabel: str, ylabel: str) -> None:
    """Per-axis labels for one panel; one shared label per figure side for a grid."""
    if len(axes) == 1:
        axes[0].set_xlabel(xlabel)
        axes[0].set_ylabel(ylabel)
    else:
        fig.supxlabel(xlabel, fontsize=9.5)
        fig.supylabel(ylabel, fontsize=9.5)


def _legend(fig, handles, labels, title: str | None = None) -> None:
    if not handles:
        return
    uniq: dict[str, Any] = {}
    for h, lab in zip(handles, labels, strict=True):
        uniq.setdefault(lab, h)
    if len(uniq) == 1 and not next(iter(uniq)):
        return
    fig.legend(list(uniq.values()), list(uniq), loc="outside right upper", title=title)


def _workloads(df) -> list[str]:
    _need(df, WL)
    if "point" not in df:
        return sorted(df[WL].unique())
    return list(dict.fromkeys(df.sort_values("point")[WL].tolist()))


def _lines(
    df,
    *,
    x: str,
    y: str,
    facet: str = WL,
    xlabel: str,
    ylabel: str,
    title: str,
    logx_bytes: bool = False,
    percent_x: bool = False,
    ylog: bool = False,
):
    """Line plot: one panel per ``facet`` value, one line per combination of the other swept params."""
    panels = _workloads(df) if facet == WL else sorted(df[facet].unique())
    series = _series_cols(df, [x, facet])
    fig, axes = _grid(len(panels))
    handles, labels = [], []
    for ax, panel in zip(axes, panels, strict=True):
        sub = df[df[facet] == panel]
        keys = series + [x]
        agg = _mean_std(sub, keys, y)
        groups = list(agg.groupby(series, sort=True, dropna=False)) if series else [((), agg)]
        for i, (key, g) in enumerate(groups):
            g = g.sort_values(x)
            xs = g[x].to_numpy(dtype=float) * (100.0 if percent_x else 1.0)
            h = ax.errorbar(
                xs,
                g["mean"].to_numpy(dtype=float),
                yerr=g["std"].to_numpy(dtype=float) if (g["count"] > 1).any() else None,
                **_line_style(i, len(groups)),
            )
            handles.append(h)
            labels.append(_label(series, key))
        ax.set_title(str(panel))
        if logx_bytes:
            _log2_bytes_axis(ax, df[x].unique())
        if ylog:
            ax.set_yscale("log")
        ax.set_ylim(bottom=0 if not ylog else None)
    _axis_labels(fig, axes, xlabel, ylabel)
    _legend(fig, handles, labels)
    fig.suptitle(title)
    return fig


def _bars(ax, cats: list[str], groups: list[str], values, errs, *, colors=None) -> list:
    """Grouped bars: ``values[i][j]`` for category i, group j."""
    n = max(len(groups), 1)
    width = 0.8 / n
    x = np.arange(len(cats))
    handles = []
    for j, _grp in enumerate(groups):
        vals = [values[i][j] for i in range(len(cats))]
        er = [errs[i][j] for i in range(len(cats))]
        h = ax.bar(
            x - 0.4 + width * (j + 0.5),
            vals,
            width,
            yerr=er if any(e > 0 for e in er) else None,
            color=(colors or PALETTE)[j % len(PALETTE)],
            edgecolor="white",
            linewidth=0.5,
        )
        handles.append(h)
    ax.set_xticks(x, cats)
    return handles


def _grouped(df, *, cat: str, group: str, metric: str, ylabel: str, title: str, scale: float = 1.0):
    """One panel per workload (and per other swept parameter), bars: category x group."""
    for col in (cat, group):
        _need(df, col)
    extra = _series_cols(df, [cat, group])
    wls = _workloads(df)
    facets = [(w, k) for w in wls for k in (_facet_keys(df[df[WL] == w], extra) or [()])]
    if len(facets) > 12:
        raise SkipFigure(f"too many panels ({len(facets)}); plot from a notebook with a selection")
    fig, axes = _grid(len(facets))
    cats = [str(c) for c in sorted(df[cat].dropna().unique())]
    grps = [str(g) for g in sorted(df[group].dropna().unique())]
    handles: list = []
    for ax, (w, key) in zip(axes, facets, strict=True):
        sub = df[df[WL] == w]
        for c, v in zip(extra, key, strict=True):
            sub = sub[sub[c] == v]
        agg = _mean_std(sub, [cat, group], metric)
        vals = [[0.0] * len(grps) for _ in cats]
        errs = [[0.0] * len(grps) for _ in cats]
        for _, r in agg.iterrows():
            i, j = cats.index(str(r[cat])), grps.index(str(r[group]))
            vals[i][j] = float(r["mean"]) * scale
            errs[i][j] = float(r["std"]) * scale
        handles = _bars(ax, cats, grps, vals, errs)
        ax.set_title(w + (f"\n{_label(extra, key)}" if extra else ""))
        ax.set_ylabel(ylabel)
        ax.grid(axis="x", visible=False)
    _legend(fig, handles, grps, title=_NAMES.get(group, group.removeprefix("param_")))
    fig.suptitle(title)
    return fig


def _facet_keys(df, cols: list[str]) -> list[tuple]:
    if not cols:
        return []
    return [tuple(k) if isinstance(k, tuple) else (k,) for k, _ in df.groupby(cols, sort=True, dropna=False)]


# --------------------------------------------------------------------------------------------------
# The figures.
# --------------------------------------------------------------------------------------------------


def faults_vs_fault_around(df):
    """Faults per 1000 accesses against ``fault_around_bytes``, per workload and prefault policy."""
    _need(df, "faults_per_1k")
    _vary(df, FA, "fault_around_bytes")
    return _lines(
        df,
        x=FA,
        y="faults_per_1k",
        xlabel="fault_around_bytes (log2)",
        ylabel="faults per 1000 accesses",
        title="Page faults vs fault-around window",
        logx_bytes=True,
    )


def fault_around_tradeoff(df):
    """What a larger window buys and costs: faults saved against mapped pages never accessed.

    One panel per combination of the other swept parameters (architecture, prefault policy, ...),
    one line per workload; points are the window sizes (4K, 64K and the largest are labelled).
    """
    _need(df, "faults", "prefaulted_ptes", "prefault_used", "pages_mapped")
    sizes = _vary(df, FA, "fault_around_bytes")
    d = df.copy()
    d["never_used"] = (d["prefaulted_ptes"] - d["prefault_used"]).clip(lower=0)
    d["never_used_pct"] = 100.0 * d["never_used"] / d["pages_mapped"].where(d["pages_mapped"] > 0, np.nan)
    extra = _series_cols(d, [FA])
    keys = _facet_keys(d, extra) or [()]
    if len(keys) > 9:
        raise SkipFigure(f"too many other swept parameters ({len(keys)} combinations); plot from a notebook")
    wls = _workloads(d)
    fig, axes = _grid(len(keys), panel=(4.0, 3.3))
    handles, labels = [], []
    for ax, key in zip(axes, keys, strict=True):
        sub = d
        for c, v in zip(extra, key, strict=True):
            sub = sub[sub[c] == v]
        agg = sub.groupby([WL, FA], sort=True)[["faults", "never_used_pct"]].mean().reset_index()
        handles, labels = [], []
        for i, w in enumerate(wls):
            g = agg[agg[WL] == w].sort_values(FA)
            if g.empty:
                continue
            base = float(g["faults"].iloc[0])
            saved = 100.0 * (1.0 - g["faults"].to_numpy(dtype=float) / base) if base > 0 else np.zeros(len(g))
            st = _line_style(i, len(wls))
            handles.append(ax.plot(g["never_used_pct"], saved, **st)[0])
            labels.append(w)
            for xv, yv, fa in zip(g["never_used_pct"], saved, g[FA], strict=True):
                if fa in (65536, sizes[-1]):
                    ax.annotate(
                        format_bytes(fa),
                        (xv, yv),
                        textcoords="offset points",
                        xytext=(4, -9),
                        fontsize=7,
                        color=st["color"],
                    )
        ax.set_ylim(-3, 103)
        ax.set_xlim(-3, 103)
        ax.set_title(_label(extra, key) if extra else "all runs")
    _axis_labels(
        fig,
        axes,
        "mapped pages never accessed (% of pages mapped)",
        f"faults saved vs a {format_bytes(sizes[0])} window (%)",
    )
    _legend(fig, handles, labels, title="workload")
    fig.suptitle(f"Fault-around trade-off: windows {format_bytes(sizes[0])} to {format_bytes(sizes[-1])}")
    return fig


def mapping_cost(df):
    """Pages mapped (RSS) and PTE-table pages against ``fault_around_bytes``, per workload."""
    _need(df, "pages_mapped", "pte_tables")
    sizes = _vary(df, FA, "fault_around_bytes")
    wls = _workloads(df)
    series = _series_cols(df, [FA])
    fig, axes = _grid(2 * len(wls), ncols_max=len(wls), panel=(3.0, 2.5))
    rows = (("pages_mapped", "pages mapped (RSS, pages)"), ("pte_tables", "PTE-table pages (4 KiB each)"))
    handles, labels = [], []
    for r, (metric, ylabel) in enumerate(rows):
        for c, w in enumerate(wls):
            ax = axes[r * len(wls) + c]
            agg = _mean_std(df[df[WL] == w], series + [FA], metric)
            groups = list(agg.groupby(series, sort=True, dropna=False)) if series else [((), agg)]
            handles, labels = [], []
            for i, (key, g) in enumerate(groups):
                g = g.sort_values(FA)
                handles.append(ax.plot(g[FA], g["mean"], **_line_style(i, len(groups)))[0])
                labels.append(_label(series, key))
            _log2_bytes_axis(ax, sizes)
            ax.set_ylim(bottom=0)
            ax.tick_params(axis="x", labelsize=7)
            if r == 0:
                ax.set_title(w)
            if c == 0:
                ax.set_ylabel(ylabel)
    fig.supxlabel("fault_around_bytes (log2)", fontsize=9.5)
    _legend(fig, handles, labels)
    fig.suptitle("What fault-around maps: resident pages and page-table pages")
    return fig


def fault_around_heatmap(df, metric: str = "faults_per_1k"):
    """Heatmap of ``fault_around_bytes`` x large-folio share (``thp_ratio``), per workload."""
    _need(df, metric)
    fas = _vary(df, FA, "fault_around_bytes")
    thps = _vary(df, THP, "thp_ratio (large-folio share)")
    extra = _series_cols(df, [FA, THP])
    wls = _workloads(df)
    facets = [(w, k) for w in wls for k in (_facet_keys(df[df[WL] == w], extra) or [()])]
    if len(facets) > 12:
        raise SkipFigure(f"too many panels ({len(facets)}); plot from a notebook with a selection")
    fig, axes = _grid(len(facets), panel=(3.9, 3.3))
    for ax, (w, key) in zip(axes, facets, strict=True):
        sub = df[df[WL] == w]
        for c, v in zip(extra, key, strict=True):
            sub = sub[sub[c] == v]
        piv = sub.groupby([THP, FA])[metric].mean().unstack(FA).reindex(index=thps, columns=fas)
        z = piv.to_numpy(dtype=float)
        finite = z[np.isfinite(z) & (z > 0)]
        norm = None
        if finite.size and finite.max() / finite.min() > 20:  # faults span decades: colour by log
            from matplotlib.colors import LogNorm

            norm = LogNorm(vmin=finite.min(), vmax=finite.max())
        im = ax.imshow(z, origin="lower", aspect="auto", cmap="cividis", norm=norm)
        ax.set_xticks(range(len(fas)), [format_bytes(v) for v in fas])
        ax.set_yticks(range(len(thps)), [f"{100 * v:.0f}%" for v in thps])
        ax.tick_params(axis="x", labelrotation=45)
        ax.grid(False)
        if z.size <= 80:
            for (i, j), v in np.ndenumerate(z):
                if np.isfinite(v):
                    light = im.norm(v) > 0.55 if v > 0 else False  # cividis is light at the top
                    ax.text(
                        j,
                        i,
                        f"{v:.3g}",
                        ha="center",
                        va="center",
                        fontsize=6.5,
                        color="black" if light else "white",
                    )
        ax.set_xlabel("fault_around_bytes (log2 steps)")
        ax.set_ylabel("large-folio (THP) share of 2 MiB regions")
        ax.set_title(w + (f"\n{_label(extra, key)}" if extra else ""))
        cb = fig.colorbar(im, ax=ax, shrink=0.9)
        cb.set_label("faults per 1000 accesses" if metric == "faults_per_1k" else metric)
    fig.suptitle("Faults per 1000 accesses: fault-around window x large-folio share")
    return fig


def pmd_mappings(df):
    """PMD (2 MiB) mappings installed against the large-folio share, per fault-around window."""
    _need(df, "pmd_mapped")
    _vary(df, THP, "thp_ratio (large-folio share)")
    return _lines(
        df,
        x=THP,
        y="pmd_mapped",
        xlabel="large-folio (THP) share of 2 MiB regions (%)",
        ylabel="PMD mappings installed",
        title="Huge-PMD mappings vs large-folio share",
        percent_x=True,
    )


def tlb_misses(df):
    """TLB misses per 1000 accesses (needs the TLB model's ``tlb_misses_per_1k`` column)."""
    _need(df, "tlb_misses_per_1k")
    if THP in df and df[THP].nunique() > 1:
        return _lines(
            df,
            x=THP,
            y="tlb_misses_per_1k",
            xlabel="large-folio (THP) share of 2 MiB regions (%)",
            ylabel="TLB misses per 1000 accesses",
            title="TLB misses vs large-folio share",
            percent_x=True,
        )
    if FA in df and df[FA].nunique() > 1:
        return _lines(
            df,
            x=FA,
            y="tlb_misses_per_1k",
            xlabel="fault_around_bytes (log2)",
            ylabel="TLB misses per 1000 accesses",
            title="TLB misses vs fault-around window",
            logx_bytes=True,
        )
    group = next(
        (c for c in ("param_arch", "param_prefault", "param_profile") if c in df and df[c].nunique() > 1),
        None,
    )
    if group is None:
        raise SkipFigure("neither thp_ratio, fault_around_bytes, arch, prefault nor profile was swept")
    return _grouped(
        df,
        cat=group,
        group=group,
        metric="tlb_misses_per_1k",
        ylabel="TLB misses per 1000 accesses",
        title="TLB misses",
    )


def _arch_policy(df) -> tuple[str, str]:
    arch, pol = "param_arch", "param_prefault"
    _need(df, arch, pol)
    if df[arch].nunique() < 2 and df[pol].nunique() < 2:
        raise SkipFigure("neither arch nor prefault was swept")
    return arch, pol


def _by_policy(df, metric: str, ylabel: str, title: str, scale: float = 1.0):
    """Lines against fault_around_bytes when it was swept, else bars: architecture x prefault policy."""
    arch, pol = _arch_policy(df)
    if FA in df and df[FA].nunique() > 1:
        d = df.assign(**{metric: df[metric] * scale})
        return _lines(
            d,
            x=FA,
            y=metric,
            xlabel="fault_around_bytes (log2)",
            ylabel=ylabel,
            title=title,
            logx_bytes=True,
        )
    return _grouped(df, cat=arch, group=pol, metric=metric, ylabel=ylabel, title=title, scale=scale)


def access_flag_faults(df):
    """Access-flag faults per 1000 accesses by architecture and prefault policy."""
    _need(df, "fault_af", "accesses")
    d = df.assign(af_per_1k=1000.0 * df["fault_af"] / df["accesses"].clip(lower=1))
    return _by_policy(
        d,
        "af_per_1k",
        "access-flag faults per 1000 accesses",
        "Access-flag faults by architecture and prefault policy",
    )


def false_young(df):
    """Share of prefaulted PTEs installed young and never accessed (needs ``false_young_fraction``)."""
    _need(df, "false_young_fraction")
    return _by_policy(
        df,
        "false_young_fraction",
        "false-young prefaulted PTEs (%)",
        "False-young pages by architecture and prefault policy",
        scale=100.0,
    )


def _cost_columns(df) -> list[str]:
    """Numeric ``cost_*`` components (totals, nanosecond versions and the model name excluded)."""
    out = []
    for c in df.columns:
        if not c.startswith("cost_") or "total" in c or c.endswith("_ns") or c == "cost_model":
            continue
        if np.issubdtype(df[c].dtype, np.number):
            out.append(c)
    return out


def _stacked(
    df,
    comps: list[str],
    names: list[str],
    *,
    ylabel: str,
    title: str,
    legend: str,
    mode: str,
    colors: Sequence[str] = PALETTE,
):
    """Stacked bars of ``comps``, one panel column per workload.

    Bars: the fault-around windows if they were swept (panel rows: the architecture / prefault /
    profile settings), else those settings. ``mode``: ``per_access`` or ``percent`` of the stack.
    """
    _need(df, "accesses", *comps)
    policy = [c for c in ("param_arch", "param_prefault", "param_profile") if c in df and df[c].nunique() > 1]
    by_window = FA in df and df[FA].nunique() > 1
    cat_cols = [FA] if by_window else policy
    rows_cols = _series_cols(df, [*cat_cols, "param_cost", "param_tlb"])
    wls = [w for w in _workloads(df) if (df.loc[df[WL] == w, comps].fillna(0) != 0).any(axis=None)]
    if not wls:
        raise SkipFigure(f"every {', '.join(comps)} is zero")
    row_keys = _facet_keys(df, rows_cols) or [()]
    n_panels = len(row_keys) * len(wls)
    if n_panels > 30:
        raise SkipFigure(f"too many panels ({n_panels}); plot from a notebook with a selection")
    d = df.copy()
    if mode == "per_access":
        for c in comps:
            d[c] = d[c] / d["accesses"].clip(lower=1)
    else:
        total = d[comps].sum(axis=1).where(lambda t: t > 0, np.nan)
        for c in comps:
            d[c] = 100.0 * d[c] / total
    panel = (max(2.6, 0.32 * d.groupby(cat_cols).ngroups + 1.0) if cat_cols else 2.6, 2.6)
    fig, axes = _grid(len(row_keys) * len(wls), ncols_max=len(wls), panel=panel)
    handles: list = []
    for r, key in enumerate(row_keys):
        for col, w in enumerate(wls):
            ax = axes[r * len(wls) + col]
            sub = d[d[WL] == w]
            for c, v in zip(rows_cols, key, strict=True):
                sub = sub[sub[c] == v]
            if cat_cols:
                agg = sub.groupby(cat_cols, sort=True, dropna=False)[comps].mean()
                cats = [_label(cat_cols, k) if not by_window else format_bytes(k) for k in agg.index]
            else:
                agg = sub[comps].mean().to_frame().T
                cats = ["all runs"]
            bottom = np.zeros(len(agg))
            handles = []
            for j, c in enumerate(comps):
                vals = np.nan_to_num(agg[c].to_numpy(dtype=float))
                color, hatch = colors[j % len(colors)], ("///" if j >= len(colors) else None)
                xs = np.arange(len(agg))
                bar = ax.bar(xs, vals, 0.75, bottom=bottom, color=color, hatch=hatch, linewidth=0)
                handles.append(bar)
                bottom += vals
            rot = 0 if by_window and len(cats) <= 6 else 40
            ax.set_xticks(range(len(agg)), cats, rotation=rot, ha="right" if rot else "center", fontsize=7)
            title_bits = [w] if r == 0 else []
            if rows_cols and col == 0:
                ax.set_ylabel(_label(rows_cols, key), fontsize=8)
            ax.set_title("\n".join(title_bits))
            ax.grid(axis="x", visible=False)
            if mode == "percent":
                ax.set_ylim(0, 100)
    fig.supylabel(ylabel, fontsize=9.5)
    if by_window:
        fig.supxlabel("fault_around_bytes", fontsize=9.5)
    _legend(fig, handles, names, title=legend)
    rows_note = ", ".join(_NAMES.get(c, c.removeprefix("param_")) for c in rows_cols)
    fig.suptitle(f"{title} (rows: {rows_note})" if rows_cols else title)
    return fig


def cost_breakdown(df):
    """Stacked estimated-cost components (``cost_*`` columns) in cycles per access.

    Bars: architecture / prefault policy / kernel profile (those that were swept); panels: workloads
    and any other swept parameter (the fault-around window, ...). Components that are zero in every
    run are left out.
    """
    comps = _cost_columns(df)
    if not comps:
        raise SkipFigure("the results have no cost_* columns (cost model not enabled)")
    d = df.copy()
    walks = [c for c in comps if c.startswith("cost_walk_")]
    if len(walks) > 1:  # one bucket for the page-walk levels
        d["cost_page_walk"] = d[walks].sum(axis=1)
        comps = [c for c in comps if c not in walks] + ["cost_page_walk"]
    comps = [c for c in comps if (d[c].fillna(0) != 0).any()]
    names = [c.removeprefix("cost_").replace("_", " ") for c in comps]
    return _stacked(
        d,
        comps,
        names,
        ylabel="estimated cycles per access",
        title="Estimated cost breakdown",
        legend="component",
        mode="per_access",
    )


_AGING = {
    "aging_protected_used": "kept, used",
    "aging_reclaim_untouched": "evicted, never used",
    "aging_protected_untouched": "kept, never used (false young)",
    "aging_reclaim_used": "evicted, used",
}


def reclaim_aging(df):
    """What reclaim aging keeps and evicts, by architecture and prefault policy (needs ``aging_*``)."""
    comps = [c for c in _AGING if c in df.columns]
    if len(comps) < len(_AGING):
        raise SkipFigure("the results have no aging_* columns (reclaim aging is off: aging_interval = 0)")
    return _stacked(
        df,
        comps,
        [_AGING[c] for c in comps],
        ylabel="aging decisions on mapped pages (%)",
        title="What reclaim aging keeps and evicts",
        legend="decision",
        mode="percent",
        colors=["#0072B2", "#56B4E9", "#D55E00", "#E69F00"],  # good: blues; wrong calls: vermillion, orange
    )


def _profile_key(p: str) -> tuple:
    try:
        return tuple(int(x) for x in str(p).split("-")[-1].split("."))
    except ValueError:
        return (999, str(p))


def kernel_profiles(df):
    """Kernel profiles side by side: faults, faults relative to the oldest profile, PTE batches per fault.

    Columns: one per combination of the other swept parameters (page-cache mix, window, ...);
    x: workloads; bars: profiles.
    """
    _need(df, "faults_per_1k", "faults", "set_pte_batches")
    _vary(df, "param_profile", "profile")
    profiles = sorted(df["param_profile"].unique(), key=_profile_key)
    base_profile = profiles[0]
    extra = _series_cols(df, ["param_profile"])
    keys = _facet_keys(df, extra) or [()]
    if len(keys) > 4:
        raise SkipFigure(f"too many other swept parameters ({len(keys)} combinations); plot from a notebook")
    wls = _workloads(df)
    d = df.assign(batches_per_fault=df["set_pte_batches"] / df["faults"].where(df["faults"] > 0, np.nan))
    idx = ["workload_label", *extra, "replicate"] if "replicate" in d else ["workload_label", *extra]
    base = d[d["param_profile"] == base_profile].set_index(idx)["faults"]
    d["faults_rel"] = 100.0 * d["faults"].to_numpy() / base.reindex(d.set_index(idx).index).to_numpy()
    rows = (
        ("faults_per_1k", "faults per 1000 accesses (log)"),
        ("faults_rel", f"faults vs {base_profile} (%)"),
        ("batches_per_fault", "set_pte batches per fault"),
    )
    fig, axes = _grid(len(rows) * len(keys), ncols_max=len(keys), panel=(max(3.2, 0.75 * len(wls) + 1), 2.5))
    handles: list = []
    for r, (metric, ylabel) in enumerate(rows):
        for c, key in enumerate(keys):
            ax = axes[r * len(keys) + c]
            sub = d
            for col, v in zip(extra, key, strict=True):
                sub = sub[sub[col] == v]
            agg = sub.groupby([WL, "param_profile"])[metric].agg(["mean", "std"])
            vals = [[float(agg["mean"].get((w, p), np.nan)) for p in profiles] for w in wls]
            errs = [[float(np.nan_to_num(agg["std"].get((w, p), 0.0))) for p in profiles] for w in wls]
            handles = _bars(ax, wls, profiles, vals, errs)
            ax.grid(axis="x", visible=False)
            if metric == "faults_per_1k":
                ax.set_yscale("log")
            if metric == "faults_rel":
                ax.axhline(100.0, color="#555555", linewidth=0.8, linestyle=":")
                ax.set_ylim(0, max(110.0, float(np.nanmax(np.asarray(vals, dtype=float))) * 1.05))
            if r == 0:
                ax.set_title(_label(extra, key) if extra else "")
            if c == 0:
                ax.set_ylabel(ylabel)
            if r < len(rows) - 1:
                ax.tick_params(axis="x", labelbottom=False)
            else:
                ax.tick_params(axis="x", labelrotation=35)
                for t in ax.get_xticklabels():
                    t.set_horizontalalignment("right")
    _legend(fig, handles, profiles, title="kernel")
    fig.suptitle("Kernel profiles on the same workloads")
    return fig


#: Standard figures in the order ``fastfault plot`` draws them: file stem -> function.
FIGURES: dict[str, Callable[[Any], Any]] = {
    "faults_vs_fault_around": faults_vs_fault_around,
    "fault_around_tradeoff": fault_around_tradeoff,
    "mapping_cost": mapping_cost,
    "heatmap_fault_around_thp": fault_around_heatmap,
    "pmd_mappings": pmd_mappings,
    "tlb_misses": tlb_misses,
    "access_flag_faults": access_flag_faults,
    "false_young": false_young,
    "reclaim_aging": reclaim_aging,
    "cost_breakdown": cost_breakdown,
    "kernel_profiles": kernel_profiles,
}


def save_figures(
    df,
    out_dir: str | Path,
    *,
    formats: Sequence[str] = ("png", "svg"),
    only: Sequence[str] | None = None,
) -> tuple[list[Path], list[str]]:
    """Draw every standard figure the table supports and save it.

    Parameters
    ----------
    df : pandas.DataFrame
        A sweep's results (:func:`fastfault.sweep.load_results`).
    out_dir : path-like
        Created if needed.
    formats : sequence of str
        File formats (``png``, ``svg``, ``pdf``).
    only : sequence of str, optional
        Names from :data:`FIGURES` to draw.

    Returns
    -------
    written : list of pathlib.Path
    notes : list of str
        One line per skipped figure and why.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    notes: list[str] = []
    for name, fn in FIGURES.items():
        if only and name not in only:
            continue
        with style():
            try:
                fig = fn(df)
            except SkipFigure as why:
                notes.append(f"{name}: skipped, {why}")
                continue
            FigureCanvasAgg(fig)
            for fmt in formats:
                path = out / f"{name}.{fmt}"
                tmp = path.with_name(f".{path.name}.tmp")
                fig.savefig(tmp, format=fmt)
                tmp.replace(path)
                written.append(path)
    return written, notes

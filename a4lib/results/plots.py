"""The figures: a run's loss curve with its epochs marked, and comparisons of several runs.

Every function builds a ``matplotlib.figure.Figure`` without pyplot (no global state, no GUI
backend, nothing shown as a side effect) and returns it; ``save`` writes it as PNG. A history is
anything with the keys of a run's ``history.npz``: ``smooth_loss`` (per update), and optionally
``loss``, ``epoch_starts``, ``val_update`` and ``val_loss``.
"""
from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

#: epochs up to this many get a label each; more get unlabelled boundary lines only
MAX_EPOCH_LABELS = 12

_thousands = FuncFormatter(lambda x, _pos: f"{x:,.0f}")


def update_axis(axis, max_ticks: int = 6) -> None:
    """An axis of update numbers: thousands separated, at most ``max_ticks`` ticks (so that labels
    such as 100,000 never run into each other on a narrow panel)."""
    axis.set_major_locator(MaxNLocator(nbins=max_ticks, integer=True, min_n_ticks=3))
    axis.set_major_formatter(_thousands)


def _updates(n: int) -> np.ndarray:
    """The update numbers 1..n that the per-update arrays are indexed by."""
    return np.arange(1, n + 1)


def mark_epochs(ax, epoch_starts, n_updates: int, label: bool = True) -> int:
    """Dashed lines where epochs 2, 3, ... begin, and "epoch k" above each epoch's span.

    ``epoch_starts`` holds the update count at which each epoch began (0 first); a start at or
    beyond ``n_updates`` (an epoch that had not begun training) is left out. Returns the number
    of epochs drawn.
    """
    starts = [int(s) for s in np.asarray(epoch_starts, dtype=np.int64).ravel() if 0 <= s < n_updates]
    if not starts or starts[0] != 0:
        starts = [0] + starts
    for s in starts[1:]:
        ax.axvline(s, color="0.45", linestyle="--", linewidth=0.8, zorder=1)
    if label and len(starts) <= MAX_EPOCH_LABELS:
        ends = starts[1:] + [n_updates]
        for k, (a, b) in enumerate(zip(starts, ends), start=1):
            if (b - a) >= 0.06 * n_updates:  # room for the label
                ax.text((a + b) / 2, 1.01, f"epoch {k}", transform=ax.get_xaxis_transform(),
                        ha="center", va="bottom", fontsize=8.5, color="0.3", clip_on=False)
    return len(starts)


def loss_curve(history: Mapping, *, title: str | None = None, raw: bool = False,
               best_update: int | None = None, figsize=(8.0, 4.0)) -> Figure:
    """The smooth loss against the update number, epoch boundaries dashed and labelled.

    raw: also draw the per-update loss, faintly. best_update (the updates the best parameters have
    had): mark the smooth loss measured with them, at update best_update + 1.
    A held-out loss (``val_update``, ``val_loss``, mean per character) goes on a second axis.
    """
    smooth = np.asarray(history["smooth_loss"], dtype=np.float64)
    n = len(smooth)
    x = _updates(n)
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    if raw and "loss" in history and len(history["loss"]) == n:
        ax.plot(x, np.asarray(history["loss"]), color="tab:blue", alpha=0.15, linewidth=0.5, label="loss")
    ax.plot(x, smooth, color="tab:blue", linewidth=1.4, label="smooth loss")
    if best_update is not None and 0 <= best_update < n:
        ax.plot([best_update + 1], [smooth[best_update]], "o", color="tab:red", markersize=5,
                label=f"best parameters: after {best_update:,} updates", zorder=3)
    n_epochs = mark_epochs(ax, history.get("epoch_starts", [0]), n) if n else 0
    if n_epochs > 1:
        ax.plot([], [], color="0.45", linestyle="--", linewidth=0.8, label="epoch boundary")
    ax.set_xlabel("update")
    ax.set_ylabel("smooth loss (sum over the sequence)")
    update_axis(ax.xaxis)
    ax.set_xlim(0, max(n, 1) * 1.015)  # room for the marker at the last update
    ax.grid(True, alpha=0.3)
    val_x = np.asarray(history.get("val_update", []))
    if len(val_x):
        ax2 = ax.twinx()
        ax2.plot(val_x, np.asarray(history["val_loss"]), color="tab:orange", marker=".", linewidth=1,
                 label="held-out loss")
        ax2.set_ylabel("held-out loss per character")
        lines, labels = ax.get_legend_handles_labels()
        lines2, labels2 = ax2.get_legend_handles_labels()
        ax.legend(lines + lines2, labels + labels2, loc="upper right", bbox_to_anchor=(1, 0.9))
    else:
        ax.legend(loc="upper right", bbox_to_anchor=(1, 0.9))
    if title:
        ax.set_title(title)
    return fig


def compare(histories: Mapping[str, Mapping], *, key: str = "smooth_loss", title: str | None = None,
            xlabel: str = "update", ylabel: str | None = None, figsize=(8.0, 4.0)) -> Figure:
    """Several runs' curves of ``key`` (one label each) on one axis, e.g. for different eta or m."""
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    for label, history in histories.items():
        y = np.asarray(history[key], dtype=np.float64)
        ax.plot(*thin(_updates(len(y)), y), linewidth=1.2, label=str(label))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel or key.replace("_", " "))
    update_axis(ax.xaxis)
    ax.grid(True, alpha=0.3)
    if histories:
        ax.legend()
    if title:
        ax.set_title(title)
    return fig


def png_bytes(fig: Figure, dpi: int = 150) -> bytes:
    """The figure as PNG data."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def save(fig: Figure, path: str | Path, dpi: int = 150) -> Path:
    """Write the figure as PNG to ``path`` atomically (folders made as needed); the path."""
    from ..checkpoint import write_bytes

    write_bytes(Path(path), png_bytes(fig, dpi))
    return Path(path)


# --- the studies beyond the assignment -------------------------------------------------------

#: curves with more points than this are thinned for drawing (every k-th point, the last kept)
MAX_POINTS = 4000


def thin(x, y, max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Every k-th point of a curve (and its last), so that at most about ``max_points`` are drawn."""
    x, y = np.asarray(x), np.asarray(y)
    if len(x) <= max_points:
        return x, y
    k = -(-len(x) // max_points)
    idx = np.arange(0, len(x), k)
    if idx[-1] != len(x) - 1:
        idx = np.append(idx, len(x) - 1)
    return x[idx], y[idx]


def heldout_curves(runs: Mapping[str, tuple[Mapping, int]], *, title: str | None = None,
                   figsize=(8.0, 4.0)) -> Figure:
    """For each run (label -> (history, seq_length)) its training smooth loss per character (line)
    and its held-out loss per character (dots on a dashed line), in the same colour, against the
    update. Both in nats per character."""
    from .analysis import held_out, per_char

    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    for k, (label, (history, seq_length)) in enumerate(runs.items()):
        colour = f"C{k}"
        smooth = per_char(np.asarray(history["smooth_loss"], dtype=np.float64), seq_length)
        ax.plot(*thin(_updates(len(smooth)), smooth), color=colour, linewidth=1.3,
                label=f"{label}: training (smooth loss / seq_length)")
        val = held_out(history)
        if len(val.loss):
            ax.plot(val.updates, val.loss, color=colour, linestyle="--", marker="o", markersize=3.5,
                    linewidth=1, label=f"{label}: held-out")
    ax.set_xlabel("update")
    ax.set_ylabel("loss per character (nats)")
    update_axis(ax.xaxis)
    log_scale_if_wide(ax)
    ax.grid(True, alpha=0.3)
    if runs:
        ax.legend(fontsize=8.5)
    if title:
        ax.set_title(title)
    return fig


def log_scale_if_wide(ax, ratio: float = 4.0) -> bool:
    """A logarithmic y axis (plain tick labels) when the drawn values span more than ``ratio``
    (a few early losses far above the rest would otherwise flatten the rest); whether it did."""
    ys = [np.asarray(line.get_ydata(), dtype=np.float64) for line in ax.lines]
    ys = np.concatenate([y[np.isfinite(y) & (y > 0)] for y in ys]) if ys else np.zeros(0)
    if len(ys) == 0 or ys.max() / ys.min() <= ratio:
        return False
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _pos: f"{y:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda y, _pos: f"{y:g}" if f"{y:g}"[0] in "1235" else ""))
    return True


def heldout_vs_seconds(histories: Mapping[str, Mapping], *, baseline: tuple[str, float] | None = None,
                       title: str | None = None, figsize=(8.0, 4.0)) -> Figure:
    """Each run's held-out loss per character against its training seconds (label -> history);
    ``baseline`` (label, loss): a model without training time (the n-gram) as a horizontal line."""
    from .analysis import held_out

    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    for label, history in histories.items():
        val = held_out(history)
        ax.plot(val.seconds, val.loss, marker="o", markersize=3.5, linewidth=1.2, label=str(label))
    if baseline is not None:
        ax.axhline(baseline[1], color="0.2", linestyle=":", linewidth=1.4, label=baseline[0])
    legend_outside = len(histories) + (baseline is not None) > 3  # many curves: the legend beside them, over none
    ax.set_xlabel("training seconds (held-out evaluations included)")
    ax.set_ylabel("held-out loss per character (nats)")
    ax.set_xlim(left=0)
    ax.grid(True, alpha=0.3)
    if histories and legend_outside:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8.5)
    elif histories:
        ax.legend()
    if title:
        ax.set_title(title)
    return fig


def compare_updates_seconds(runs: Mapping[str, tuple[Mapping, int]], *, figsize=(9.0, 3.8)) -> Figure:
    """Two panels, each run (label -> (history, seq_length)) a curve of its smooth loss per
    character: against the update (left) and against the training seconds (right)."""
    from .analysis import per_char

    fig = Figure(figsize=figsize, layout="constrained")
    left, right = fig.subplots(1, 2, sharey=True)
    for k, (label, (history, seq_length)) in enumerate(runs.items()):
        y = per_char(np.asarray(history["smooth_loss"], dtype=np.float64), seq_length)
        left.plot(*thin(_updates(len(y)), y), color=f"C{k}", linewidth=1.2, label=str(label))
        right.plot(*thin(np.asarray(history["seconds"], dtype=np.float64), y), color=f"C{k}", linewidth=1.2,
                   label=str(label))
    left.set_xlabel("update")
    update_axis(left.xaxis, max_ticks=4)
    right.set_xlabel("training seconds")
    right.set_xlim(left=0)
    left.set_ylabel("smooth loss per character (nats)")
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
    if runs:
        left.legend(fontsize=8.5)
    return fig


def scaling(result: Mapping, *, figsize=(9.0, 3.8)) -> Figure:
    """``a4lib bench --scaling``: characters/s (left) and the share of the matrix-product peak
    (right) against B, one line per m, solid float64 and dashed float32."""
    fig = Figure(figsize=figsize, layout="constrained")
    speed, peak = fig.subplots(1, 2)
    rows = result["rows"]
    for k, m in enumerate(sorted({r["m"] for r in rows})):
        for dtype, style in (("float64", "-"), ("float32", "--")):
            cells = sorted((r for r in rows if r["m"] == m and r["dtype"] == dtype), key=lambda r: r["batch_size"])
            if not cells:
                continue
            B = [r["batch_size"] for r in cells]
            label = f"m = {m}" if dtype == "float64" else None
            speed.plot(B, [r["chars_per_s"] for r in cells], style, color=f"C{k}", marker="o", markersize=3, label=label)
            peak.plot(B, [100 * r["peak_fraction"] for r in cells], style, color=f"C{k}", marker="o", markersize=3)
    for ax in (speed, peak):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("streams B")
        ax.grid(True, alpha=0.3)
    speed.set_yscale("log")
    speed.set_ylabel("characters/s")
    peak.set_ylabel("% of the matrix-product peak")
    handles, labels = speed.get_legend_handles_labels()
    fig.legend(handles, [f"{label} (solid float64, dashed float32)" if k == 0 else label
                         for k, label in enumerate(labels)], loc="outside lower center", ncol=len(labels), fontsize=8)
    return fig


def sweep_curves(entries, out: str | Path) -> Figure | None:
    """The smooth-loss curves of a sweep's runs in ``out`` that have a history, best first
    (``analysis.sweep_curves``); None when none has one."""
    from .analysis import sweep_curves as curves_of

    curves, per_char = curves_of(entries, out)
    if not curves:
        return None
    return compare(curves, title=f"{len(curves)} runs of the sweep {Path(out).name}",
                   ylabel="smooth loss per character" if per_char else "smooth loss (sum over the sequence)")

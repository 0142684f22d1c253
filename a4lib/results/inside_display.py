"""Showing what ``a4lib.inside`` computes: text coloured character by character, the next-character
predictions under a text, the gates' saturation and the loss against the distance of a dependency.

The coloured text is HTML with inline styles only (no classes, no script, no stylesheet), so that it
looks the same in JupyterLab, in nbconvert's HTML and in the PDF Chromium prints from it (the
background colours marked to be printed). ipywidgets, where installed, adds a picker in JupyterLab;
everything else stands without it.
"""
from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
from IPython.display import HTML
from matplotlib.figure import Figure

from .display import visible

#: ColorBrewer's RdBu, blue (low) through near-white (middle) to red (high)
DIVERGING = ("#2166ac", "#67a9cf", "#f7f7f7", "#ef8a62", "#b2182b")
PRINT = "-webkit-print-color-adjust:exact;print-color-adjust:exact"
MONO = "font-family:'DejaVu Sans Mono','Noto Sans Mono','Liberation Mono',Menlo,Consolas,monospace"
SHOWN = {"\n": "↵", " ": "\u2423", "\t": "→"}  # how a prediction shows invisible characters


def _rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)], np.float64)


_STOPS = np.stack([_rgb(c) for c in DIVERGING])


def colour(value: float, lo: float = -1.0, hi: float = 1.0) -> str:
    """The diverging map's colour (#rrggbb) of ``value`` over [lo, hi] (clipped; NaN: the middle)."""
    x = 0.5 if value != value else float(np.clip((value - lo) / (hi - lo), 0.0, 1.0))
    at = x * (len(_STOPS) - 1)
    i = min(int(at), len(_STOPS) - 2)
    rgb = _STOPS[i] + (at - i) * (_STOPS[i + 1] - _STOPS[i])
    return "#" + "".join(f"{int(round(c)):02x}" for c in rgb)


def text_colour(background: str) -> str:
    """Black on a light background, white on a dark one (relative luminance below 0.4)."""
    r, g, b = _rgb(background) / 255.0
    return "#fff" if 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.4 else "#111"


def _char(ch: str) -> str:
    """A character of a coloured text as HTML: a line break as ↵ (its span) followed by the break."""
    return "↵" if ch == "\n" else html.escape(visible(ch))


def coloured_spans(text: str, values: Sequence[float], lo: float = -1.0, hi: float = 1.0) -> str:
    """The HTML of ``text`` with each character's background the colour of its value; the value
    shows when the pointer rests on a character."""
    if len(values) != len(text):
        raise ValueError(f"{len(text)} characters but {len(values)} values")
    parts = []
    for ch, v in zip(text, values):
        bg = colour(float(v), lo, hi)
        fg = "" if text_colour(bg) == "#111" else ";color:#fff"
        parts.append(f'<span style="background:{bg}{fg}" title="{float(v):.2f}">{_char(ch)}</span>'
                     + ("\n" if ch == "\n" else ""))
    return "".join(parts)


def _block(inner: str, size: float = 8.5) -> str:
    return (f'<div style="{MONO};{PRINT};font-size:{size}pt;line-height:1.5;white-space:pre-wrap;'
            f'overflow-wrap:anywhere;margin:.3em 0 .6em">{inner}</div>')


def scale(lo: float = -1.0, hi: float = 1.0, steps: int = 9, over: tuple[float, float] | None = None,
          label: str = "", fmt: str = "+.2f") -> str:
    """The colour scale as a row of labelled cells, ``lo`` to ``hi``, coloured as values over
    ``over`` (default [lo, hi])."""
    c_lo, c_hi = over or (lo, hi)
    cells = []
    for v in np.linspace(lo, hi, steps):
        bg = colour(v, c_lo, c_hi)
        cells.append(f'<span style="background:{bg};color:{text_colour(bg)};padding:0 .35em">{v:{fmt}}</span>')
    return f'<div style="{MONO};{PRINT};font-size:8pt;margin:.2em 0">{html.escape(label)}{"".join(cells)}</div>'


def coloured_text(text: str, values: Sequence[float], lo: float = -1.0, hi: float = 1.0,
                  caption: str | None = None, with_scale: bool = True) -> HTML:
    """A passage coloured by one unit's activations (``values``, one per character) over [lo, hi],
    under its caption (plain text) and above the colour scale."""
    head = f'<div style="font-size:9.5pt;margin-top:.6em"><b>{html.escape(caption)}</b></div>' if caption else ""
    return HTML(head + _block(coloured_spans(text, values, lo, hi)) + (scale(lo, hi) if with_scale else ""))


def coloured_grid(items: Sequence[tuple[str, str, Sequence[float]]], lo: float = -1.0, hi: float = 1.0,
                  columns: int = 2) -> HTML:
    """Several coloured passages side by side, ``columns`` to a row: (caption, text, values) each,
    one colour scale below them all; a passage is never split across pages."""
    width = 100.0 / columns
    cells = [f'<div style="display:inline-block;vertical-align:top;width:{width - 2:.1f}%;margin-right:2%;'
             f'break-inside:avoid;page-break-inside:avoid"><div style="font-size:9pt;margin-top:.5em">'
             f"<b>{html.escape(caption)}</b></div>{_block(coloured_spans(text, values, lo, hi))}</div>"
             for caption, text, values in items]
    return HTML(f'<div style="{PRINT}">{"".join(cells)}</div>' + scale(lo, hi))


def unit_table(rows: Sequence, passages: Sequence[tuple[str, Sequence[float]]], lo: float = -1.0,
               hi: float = 1.0) -> HTML:
    """The ranked table of the best unit per feature (``inside.BestUnit`` rows): rank, feature, layer,
    unit, r and the feature's mean over the text, and the unit's coloured passage (``passages``:
    (text, values) per row) in the last column; a row is never split across pages."""
    th = 'style="text-align:{};padding:.15em .5em;border-bottom:1px solid #999;vertical-align:bottom"'
    td = 'style="text-align:{};padding:.25em .5em;vertical-align:top"'
    head = "".join(f"<th {th.format(a)}>{h}</th>" for h, a in
                   (("#", "right"), ("feature", "left"), ("layer", "right"), ("unit", "right"), ("r", "right"),
                    ("feature mean", "right"), ("the unit on the passage", "left")))
    body = []
    for k, (row, (text, values)) in enumerate(zip(rows, passages), start=1):
        cells = ((k, "right"), (html.escape(row.feature), "left"), (row.layer, "right"), (row.unit, "right"),
                 (f"{row.r:+.2f}", "right"), (f"{row.feature_mean:.2f}", "right"))
        body.append('<tr style="break-inside:avoid;page-break-inside:avoid;border-bottom:1px solid #ddd">'
                    + "".join(f"<td {td.format(a)}>{v}</td>" for v, a in cells)
                    + f'<td style="padding:0 .5em">{_block(coloured_spans(text, values, lo, hi))}</td></tr>')
    table = (f'<table style="border-collapse:collapse;{PRINT};font-size:9pt;width:100%"><thead><tr>{head}</tr>'
             f'</thead><tbody>{"".join(body)}</tbody></table>')
    return HTML(table + scale(lo, hi))


def predictions(text: str, ids: np.ndarray, probs: np.ndarray, chars: Sequence[str]) -> HTML:
    """Under each character of ``text``, its k likeliest successors (``ids``, ``probs`` (T, k) from
    ``inside.top_predictions``), each shaded by its probability; the one that came next framed."""
    cols = []
    for t, ch in enumerate(text):
        nxt = text[t + 1] if t + 1 < len(text) else None
        cells = [f'<div style="font-weight:bold;border-bottom:1px solid #888">{html.escape(SHOWN.get(ch, visible(ch)))}'
                 "</div>"]
        for i, p in zip(ids[t], probs[t]):
            c = chars[int(i)]
            bg = colour(float(p), -1.0, 1.0)  # 0 .. 1 on the red half: white to red
            frame = "outline:1px solid #000;outline-offset:-1px;" if c == nxt else ""
            cells.append(f'<div style="background:{bg};color:{text_colour(bg)};{frame}" title="{p:.3f}">'
                         f"{html.escape(SHOWN.get(c, visible(c)))}</div>")
        cols.append(f'<div style="display:inline-block;vertical-align:top;width:1.35em;text-align:center;'
                    f'margin:0 1px 6px 0">{"".join(cells)}</div>')
    return HTML(f'<div style="{MONO};{PRINT};font-size:8.5pt;line-height:1.35">{"".join(cols)}</div>'
                + scale(0.0, 1.0, 6, over=(-1.0, 1.0), label="probability ", fmt=".1f"))


# --- figures ------------------------------------------------------------------------------------

def saturation_figure(gates: Sequence, figsize=None) -> Figure:
    """The 2015 paper's plot: one panel per gate, each unit a dot at (fraction of time left-saturated,
    fraction right-saturated), the layers in different colours (``inside.GateSaturation`` rows)."""
    from .inside import GATE_NAMES, LEFT, RIGHT

    names = list(dict.fromkeys(g.gate for g in gates))
    layers = sorted({g.layer for g in gates})
    fig = Figure(figsize=figsize or (3.1 * len(names) + 0.4, 3.5), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    colours = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02"]
    for ax, name in zip(axes, names):
        ax.plot([0, 1], [1, 0], color="0.75", linewidth=0.8, zorder=1)  # left + right <= 1
        for g in gates:
            if g.gate == name:
                ax.scatter(g.left, g.right, s=9, alpha=0.7, color=colours[(g.layer - 1) % len(colours)],
                           label=f"layer {g.layer}", zorder=2, linewidths=0)
        ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), title=GATE_NAMES.get(name, name),
               xlabel=f"fraction of time < {LEFT:g}")
        ax.set_box_aspect(1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"fraction of time > {RIGHT:g}")
    if len(layers) > 1:
        axes[-1].legend(fontsize=8, loc="upper right", markerscale=1.5)
    return fig


def distance_figure(bins: Sequence, order: int, xlabel: str, figsize=(6.0, 3.2)) -> Figure:
    """The mean loss of the network and the n-gram on closing a dependency against the distance since
    it opened (``inside.DistanceBin`` rows, plotted at each bin's lower edge); the n-gram's context
    (order - 1 characters) dotted."""
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.subplots()
    x = [b.lo for b in bins]
    ax.plot(x, [b.net for b in bins], "o-", label="network", color="#b2182b")
    ax.plot(x, [b.ngram for b in bins], "s--", label=f"{order}-gram", color="#2166ac")
    ax.axvline(order, color="0.5", linestyle=":", linewidth=1)
    ax.set_xscale("log", base=2)
    ax.set_xticks(x, [f"{b.lo}–{'' if b.hi == float('inf') else int(b.hi) - 1}" for b in bins], fontsize=8)
    ax.minorticks_off()
    ax.set(xlabel=xlabel, ylabel="loss on the closing character (nats)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


# --- JupyterLab: a picker, where ipywidgets is installed ----------------------------------------

def picker(reading, length: int = 600):
    """A layer, activation and unit picker over the first ``length`` characters of a reading (an
    ``inside.Reading``) that colours the text as they change; None without ipywidgets."""
    try:
        import ipywidgets as w
    except ImportError:
        return None
    from IPython.display import display

    from .inside import activation, value_range

    part = reading.window(0, length)
    layer = w.Dropdown(options=list(range(1, len(part.layers) + 1)), description="layer")
    name = w.Dropdown(options=part.names(), description="activation")
    unit = w.BoundedIntText(value=0, min=0, max=part.layers[0]["h"].shape[1] - 1, description="unit")
    out = w.Output()

    def draw(_=None) -> None:
        lo, hi = value_range(name.value)
        with out:
            out.clear_output(wait=True)
            display(coloured_text(part.text, activation(part, name.value, layer.value)[:, unit.value], lo, hi))

    for control in (layer, name, unit):
        control.observe(draw, names="value")
    draw()
    return w.VBox([w.HBox([layer, name, unit]), out])

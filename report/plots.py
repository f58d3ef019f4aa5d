"""The report's plots, drawn by matplotlib to SVG text that the pages inline (no image files, no network).

    >>> plotter = UnitPlotter()                        # one per process: its figure is reused for every unit
    >>> svg = plotter.draw(top_acts, random_acts, profile, firing_rate)
    >>> bars("percent dead", layers, pct_dead)         # a one-off figure (layer pages, the index)

A unit page has one figure with two panels (activation histogram, positional profile). Building a new matplotlib
figure costs about ten times more than redrawing one, so ``UnitPlotter`` keeps its artists and only swaps their data.
Plots carry numbers only, never corpus text; matplotlib escapes any text it writes into the SVG.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

matplotlib.rcParams.update({
    "svg.fonttype": "none",  # text stays text: smaller, and selectable
    "svg.hashsalt": "autointerp-report",  # deterministic element ids
    "font.size": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
})
TOP, RANDOM, LINE, MUTED = "#c2410c", "#2563eb", "#0f766e", "#6b7280"
_ID = re.compile(r'\bid="([^"]+)"')


def to_svg(fig: Figure, prefix: str) -> str:
    """The figure as an inline ``<svg>`` element (no XML prolog); element ids get ``prefix`` so that several plots
    on one page never share an id."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)
    text = _ID.sub(lambda m: f'id="{prefix}-{m[1]}"', text)
    text = re.sub(r'url\(#([^)]+)\)', lambda m: f"url(#{prefix}-{m[1]})", text)
    return re.sub(r'xlink:href="#([^"]+)"', lambda m: f'xlink:href="#{prefix}-{m[1]}"', text)


class UnitPlotter:
    """The unit page's figure: activation histogram (top and random windows) and positional firing profile."""

    BINS = 40

    def __init__(self) -> None:
        self.fig = Figure(figsize=(8.4, 2.1))
        self.hist = self.fig.add_axes((0.07, 0.24, 0.38, 0.66))
        self.prof = self.fig.add_axes((0.57, 0.24, 0.4, 0.66))
        edges = np.linspace(0, 1, self.BINS + 1)
        self.top = self.hist.stairs(np.zeros(self.BINS), edges, color=TOP, label="top windows")
        self.rand = self.hist.stairs(np.zeros(self.BINS), edges, color=RANDOM, label="random windows")
        self.hist.set_xlabel("activation")
        self.hist.set_ylabel("tokens")
        self.hist.set_title("non-zero activations: top windows (orange), random (blue)", loc="left")
        (self.line,) = self.prof.plot([0], [0], color=LINE, lw=1.2, label="f(p)")
        self.rate = self.prof.axhline(0, color=MUTED, ls="--", lw=0.8, label="overall rate")
        self.prof.set_xlabel("position in window")
        self.prof.set_ylabel("firing rate")
        self.prof.set_title("firing rate by position (dashed: overall)", loc="left")
        for ax in (self.hist, self.prof):  # few ticks: each tick label is laid out anew on every draw
            ax.xaxis.set_major_locator(MaxNLocator(5))
            ax.yaxis.set_major_locator(MaxNLocator(3))

    def draw(self, top: Sequence[float], random: Sequence[float], profile: Sequence[float] | None,
             firing_rate: float | None, prefix: str = "u") -> str:
        t, r = np.asarray(top, float), np.asarray(random, float)
        t, r = t[t != 0], r[r != 0]  # a ReLU unit is 0 on most tokens: that bar would flatten the rest
        both = np.concatenate([t, r]) if len(t) + len(r) else np.zeros(1)
        lo, hi = float(both.min()), float(both.max())
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, self.BINS + 1)
        ht, hr = np.histogram(t, edges)[0], np.histogram(r, edges)[0]
        self.top.set_data(ht, edges)
        self.rand.set_data(hr, edges)
        self.hist.set_xlim(edges[0], edges[-1])
        self.hist.set_ylim(0, max(1, ht.max(initial=0), hr.max(initial=0)) * 1.08)
        p = np.asarray(profile if profile else [0.0], float)
        self.line.set_data(np.arange(len(p)), p)
        self.rate.set_ydata([firing_rate or 0.0] * 2)
        self.prof.set_xlim(0, max(1, len(p) - 1))
        self.prof.set_ylim(0, max(0.05, float(p.max()), firing_rate or 0.0) * 1.1)
        return to_svg(self.fig, prefix)


def bars(title: str, labels: Sequence[object], values: Sequence[float | None], ylabel: str, prefix: str,
         color: str = LINE) -> str:
    fig = Figure(figsize=(6.4, 2.2), layout="constrained")
    ax = fig.add_subplot()
    ax.bar([str(x) for x in labels], [v or 0.0 for v in values], color=color)
    ax.set_title(title, loc="left")
    ax.set_ylabel(ylabel)
    return to_svg(fig, prefix)


def histogram(title: str, groups: dict[str, Sequence[float]], xlabel: str, prefix: str, bins: int = 20,
              range_: tuple[float, float] | None = None) -> str:
    """Step histograms of one or more groups of values on shared bins."""
    fig = Figure(figsize=(6.4, 2.2), layout="constrained")
    ax = fig.add_subplot()
    values = [np.asarray(v, float) for v in groups.values() if len(v)]
    if values:
        edges = np.histogram_bin_edges(np.concatenate(values), bins=bins, range=range_)
        for name, v in groups.items():
            if len(v):
                ax.hist(np.asarray(v, float), bins=edges, histtype="step", lw=1.4, label=f"{name} ({len(v)})")
        ax.legend(frameon=False, fontsize=7)
    ax.set_title(title, loc="left")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    return to_svg(fig, prefix)


def scatter(title: str, x: Sequence[float], y: Sequence[float], xlabel: str, ylabel: str, prefix: str,
            hline: float | None = None) -> str:
    fig = Figure(figsize=(6.4, 2.2), layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(x, y, s=6, color=LINE)
    if hline is not None:
        ax.axhline(hline, color=TOP, ls="--", lw=0.8)
    ax.set_title(title, loc="left")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return to_svg(fig, prefix)


def profiles(title: str, curves: dict[str, Sequence[float]], prefix: str) -> str:
    """Firing rate by position, one line per unit."""
    fig = Figure(figsize=(6.4, 2.4), layout="constrained")
    ax = fig.add_subplot()
    for name, curve in curves.items():
        ax.plot(np.arange(len(curve)), curve, lw=1, label=name)
    if curves:
        ax.legend(frameon=False, fontsize=6, ncol=4)
    ax.set_title(title, loc="left")
    ax.set_xlabel("position in window")
    ax.set_ylabel("firing rate")
    ax.set_ylim(0, 1.05)
    return to_svg(fig, prefix)

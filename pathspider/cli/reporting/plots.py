"""The report's plots: for one dimension of a plugin's conditions (``ecn.connectivity``:
works / broken / transient / offline) and one grouping (lab class, IP version, rank bucket), a
horizontal bar per group split into the shares of its targets with each value, as a PNG.

matplotlib draws with its Agg renderer through :class:`~matplotlib.figure.Figure` (no pyplot,
so no global figure state and no display); text from the results (group and condition names)
is drawn as it is: mathtext is off, a ``$`` is just a dollar sign.
"""
import io

from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: Values in the order they are stacked (others follow, most frequent first).
VALUE_ORDER = ("works", "online", "succeeded", "success", "received", "acked", "unchanged",
               "seen", "reflected", "not_seen", "not_received", "not_acked", "transient",
               "broken", "failed", "deflated", "inflated", "absent", "offline",
               "not_observed", "not_applicable")
#: Colours that say what a value means: green works, red broken, grey offline.
COLOURS = {
    "works": "#2e9d3a", "online": "#2e9d3a", "succeeded": "#2e9d3a", "success": "#2e9d3a",
    "received": "#2e9d3a", "acked": "#2e9d3a", "unchanged": "#2e9d3a",
    "seen": "#3b75b8", "not_seen": "#a9c6e8", "reflected": "#8c62aa",
    "not_received": "#e3a33b", "not_acked": "#e3a33b", "transient": "#f0a020",
    "broken": "#d0312d", "failed": "#d0312d", "deflated": "#d0312d", "inflated": "#b5179e",
    "absent": "#8d6e63", "offline": "#8a8a8a", "not_observed": "#c8b88a",
    "not_applicable": "#dcdcdc",
}
#: Colours of conditions whose value alone says too little (a fallback "seen" is bad news).
CONDITION_COLOURS = {"ecn.fallback.seen": "#e0662a", "pathspider.not_observed": "#c8b88a"}
OTHER_COLOURS = ("#17becf", "#bcbd22", "#9467bd", "#e377c2", "#8c564b", "#7f7f7f")
#: Values shown one by one per plot; the rest are one "other" segment.
MAX_VALUES = 8
NOT_APPLICABLE = "(none)"
NA_COLOUR = "#efefef"
DPI = 90


def stack(groups, values):
    """The segments of each bar: ``(labels, [(value label, colour, [share % per group])])``.

    ``groups``: ``[(group name, GroupCounts)]``; ``values``: ``[(value, condition)]`` of the
    dimension. Targets without any of the values make the "(none)" segment.
    """
    totals = {v: sum(c.conditions[cond] for _, c in groups) for v, cond in values}
    known = [v for v in VALUE_ORDER if v in totals]
    rest = sorted((v for v in totals if v not in known), key=lambda v: -totals[v])
    shown = (known + rest)[:MAX_VALUES]
    merged = [v for v in totals if v not in shown]
    by_value = dict(values)
    segments = []
    for index, value in enumerate(shown):
        colour = CONDITION_COLOURS.get(by_value[value]) or COLOURS.get(
            value, OTHER_COLOURS[index % len(OTHER_COLOURS)])
        segments.append((value, colour, [c.conditions[by_value[value]] for _, c in groups]))
    if merged:
        segments.append(("other", "#555555",
                         [sum(c.conditions[by_value[v]] for v in merged) for _, c in groups]))
    counted = [sum(seg[2][i] for seg in segments) for i in range(len(groups))]
    segments.append((NOT_APPLICABLE, NA_COLOUR,
                     [max(c.targets - counted[i], 0) for i, (_, c) in enumerate(groups)]))
    scale = [max(c.targets, counted[i], 1) for i, (_, c) in enumerate(groups)]
    labels = [f"{name} ({c.targets})" for name, c in groups]
    return labels, [(label, colour, [100.0 * n / scale[i] for i, n in enumerate(counts)])
                    for label, colour, counts in segments]


def bar_chart(title, groups, values):
    """PNG bytes: one horizontal 100 % bar per group, split by the dimension's values."""
    labels, segments = stack(groups, values)
    height = 1.3 + 0.3 * len(labels) + 0.22 * ((len(segments) + 3) // 4)
    with rc_context({"text.parse_math": False, "font.size": 9}):
        figure = Figure(figsize=(6.6, height), dpi=DPI)
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        rows = list(range(len(labels)))[::-1]           # first group on top
        left = [0.0] * len(labels)
        for label, colour, shares in segments:
            axes.barh(rows, shares, left=left, color=colour, label=label, height=0.72,
                      edgecolor="white", linewidth=0.5)
            for row, start, share in zip(rows, left, shares):
                if share >= 9:
                    axes.text(start + share / 2, row, f"{share:.0f}%", ha="center",
                              va="center", fontsize=7,
                              color="black" if colour in (NA_COLOUR, "#dcdcdc") else "white")
            left = [a + b for a, b in zip(left, shares)]
        axes.set_yticks(rows, labels)
        axes.set_xlim(0, 100)
        axes.set_xlabel("% of targets")
        axes.set_title(title, fontsize=10, loc="left")
        axes.spines[["top", "right"]].set_visible(False)
        axes_inches = figure.get_figheight() * axes.get_position().height
        axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.42 / axes_inches),
                    ncol=4, fontsize=7, frameon=False)
        out = io.BytesIO()
        figure.savefig(out, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.08)
    return out.getvalue()

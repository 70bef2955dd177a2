"""The report page (one self-contained HTML file) and its numbers as CSV.

The page has no external reference: its style is inline, its plots are PNG images inlined as
``data:`` URIs, so it can be mailed, archived or opened offline. Every text that comes from the
results or the metadata file (group names, conditions, metadata keys and values, file names)
is HTML-escaped; in the CSV a cell that a spreadsheet would take for a formula (``=``, ``+``,
``-``, ``@`` first) is prefixed with ``'``.
"""
import base64
import csv
import datetime
import html
import json

from pathspider.version import __version__

#: Longest metadata text shown (the rest is cut and marked).
MAX_TEXT = 400
#: Most items of a metadata list or object shown.
MAX_ITEMS = 100
#: Deepest metadata nesting shown as tables.
MAX_DEPTH = 4

STYLE = """
body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;border-bottom:2px solid #444;
padding-bottom:3px;margin-top:28px} h3{font-size:15px;margin:18px 0 6px}
.note{color:#555;font-size:13px} .problem{color:#a00;font-weight:bold}
table{border-collapse:collapse;font-size:12px;margin:6px 0 10px}
th,td{border:1px solid #ccc;padding:2px 6px;text-align:right;vertical-align:top}
th{background:#f0f0f0} td.name,th.name{text-align:left} .pct{color:#777}
table.kv td{text-align:left} .plots{display:flex;flex-wrap:wrap;gap:10px}
.plots img{border:1px solid #ddd;max-width:100%} .scroll{overflow-x:auto}
details summary{cursor:pointer;font-size:13px;color:#335}
"""


def esc(value):
    """Any value as escaped HTML text."""
    return html.escape(str(value), quote=True)


def _cut(text):
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + " …"


def _percent(count, total):
    return f"{100.0 * count / total:.1f}%" if total else "–"


def metadata_html(value, depth=0):
    """A metadata value as HTML: objects as key/value tables, lists as lists, the rest as text
    (every key and value escaped, long texts and collections cut)."""
    if isinstance(value, dict) and depth < MAX_DEPTH:
        rows = [f'<tr><th class="name">{esc(_cut(str(k)))}</th><td>'
                f'{metadata_html(v, depth + 1)}</td></tr>'
                for k, v in list(value.items())[:MAX_ITEMS]]
        more = f'<tr><td colspan="2">… {len(value) - MAX_ITEMS} more</td></tr>' \
            if len(value) > MAX_ITEMS else ""
        return f'<table class="kv">{"".join(rows)}{more}</table>'
    if isinstance(value, list) and all(not isinstance(v, (dict, list)) for v in value):
        shown = ", ".join(_scalar(v) for v in value[:MAX_ITEMS])
        return esc(_cut(shown + (" …" if len(value) > MAX_ITEMS else "")))
    if isinstance(value, (dict, list)):
        return esc(_cut(json.dumps(value, ensure_ascii=False, default=str)))
    return esc(_cut(_scalar(value)))


def _scalar(value):
    return value if isinstance(value, str) else json.dumps(value)


def columns_table(tally, grouping):
    """The plugin's summary columns per group: counts and percentages of the group's targets."""
    headers = [header for header, _ in tally.plugin.summary_columns]
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    rows = []
    for group, counts in tally.groups(grouping):
        cells = "".join(f'<td>{counts.columns[h]} <span class="pct">'
                        f'{_percent(counts.columns[h], counts.targets)}</span></td>'
                        for h in headers)
        rows.append(f'<tr><td class="name">{esc(group)}</td><td>{counts.targets}</td>{cells}'
                    f'</tr>')
    return (f'<div class="scroll"><table><tr><th class="name">{esc(grouping)}</th>'
            f'<th>targets</th>{head}</tr>{"".join(rows)}</table></div>')


def conditions_table(tally, grouping):
    """Every condition (rows) per group (columns): targets with it and their share."""
    groups = tally.groups(grouping)
    head = "".join(f"<th>{esc(g)} ({c.targets})</th>" for g, c in groups)
    rows = []
    for condition in tally.known:
        cells = "".join(f'<td>{c.conditions[condition]} <span class="pct">'
                        f'{_percent(c.conditions[condition], c.targets)}</span></td>'
                        for _, c in groups)
        rows.append(f'<tr><td class="name">{esc(condition)}</td>{cells}</tr>')
    return (f'<div class="scroll"><table><tr><th class="name">condition</th>{head}</tr>'
            f'{"".join(rows)}</table></div>')


def plots_html(tally, grouping):
    """One inlined PNG per dimension of the plugin's conditions."""
    groups = tally.groups(grouping)
    images = []
    for dimension, values in tally.dimensions().items():
        from pathspider.cli.reporting import plots   # matplotlib: only when drawing
        png = plots.bar_chart(f"{dimension} per {grouping}", groups, values)
        data = base64.b64encode(png).decode("ascii")
        images.append(f'<img alt="{esc(dimension)} per {esc(grouping)}" '
                      f'src="data:image/png;base64,{data}">')
    return f'<div class="plots">{"".join(images)}</div>'


def plugin_section(tally, files, groupings):
    """The section of one plugin: per grouping its plots, summary columns and conditions."""
    plugin = tally.plugin
    legend = getattr(plugin, "summary_legend", "") or ""
    parts = [f'<section class="plugin" id="plugin-{esc(plugin.command_name)}">',
             f"<h2>{esc(plugin.command_name)}: {tally.targets} targets</h2>",
             f'<p class="note">from {esc(", ".join(files))}</p>']
    if legend:
        parts.append(f'<p class="note">{esc(legend)}</p>')
    if not tally.targets:
        parts.append('<p class="problem">no result records in these files</p>')
    for grouping in groupings:
        parts += [f"<h3>Per {esc(grouping)}</h3>", plots_html(tally, grouping),
                  columns_table(tally, grouping),
                  f"<details><summary>every condition per {esc(grouping)}</summary>"
                  f"{conditions_table(tally, grouping)}</details>"]
    parts.append("</section>")
    return "\n".join(parts)


def render(sections, title, inputs, metadata=None, problem=None, now=None):
    """The whole page. ``sections``: ``[(tally, files, groupings)]``."""
    now = now or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    head = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width">'
            f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>")
    parts = [head, f"<h1>{esc(title)}</h1>",
             f'<p class="note">made {esc(now)} by pathspider {esc(__version__)} from '
             f'{esc(", ".join(inputs))}</p>']
    if metadata is not None or problem:
        parts.append('<section id="run"><h2>Run</h2>')
        if problem:
            parts.append(f'<p class="problem">metadata: {esc(problem)}</p>')
        if metadata is not None:
            parts.append(metadata_html(metadata))
        parts.append("</section>")
    parts += [plugin_section(*section) for section in sections]
    parts.append("</body></html>\n")
    return "\n".join(parts)


CSV_HEADER = ("plugin", "grouping", "group", "condition", "dimension", "value", "targets_with",
              "targets", "percent")


def csv_rows(sections):
    """The per-condition numbers: one row per plugin, grouping, group and condition."""
    yield CSV_HEADER
    for tally, _, groupings in sections:
        for grouping in groupings:
            for group, counts in tally.groups(grouping):
                for condition, (dimension, value) in tally.known.items():
                    count = counts.conditions[condition]
                    share = f"{100.0 * count / counts.targets:.2f}" if counts.targets else ""
                    yield (tally.plugin.command_name, grouping, group, condition, dimension,
                           value, count, counts.targets, share)


def write_csv(stream, sections):
    """Write :func:`csv_rows` to ``stream``, cells safe for spreadsheets."""
    writer = csv.writer(stream, lineterminator="\n")
    for row in csv_rows(sections):
        writer.writerow([_cell(cell) for cell in row])


def _cell(value):
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text

"""The campaign's HTML page: attributions per condition, the rows that point at a vantage.

Self-contained (inline style, the report's own stylesheet and escaping from
:mod:`pathspider.cli.reporting.page`); every text from records or the journal is escaped.
"""
import collections

from pathspider.cli.reporting.page import STYLE, esc, metadata_html
from pathspider.version import __version__

#: Most rows of the per-target table (the ndjson output has them all).
MAX_ROWS = 2000


def _attribution_columns(vantages):
    return ["target", *(f"vantage:{v}" for v in vantages), "mixed"]


def summary_table(counts, vantages):
    """Table: one row per (group, condition), one column per attribution."""
    columns = _attribution_columns(vantages)
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    rows = []
    for (group, condition), counter in counts.items():
        cells = "".join(f"<td>{counter.get(c, 0)}</td>" for c in columns)
        rows.append(f'<tr><td class="name">{esc(group)}</td><td class="name">{esc(condition)}'
                    f"</td>{cells}</tr>")
    return (f'<div class="scroll"><table><tr><th class="name">group</th><th class="name">'
            f'condition</th>{head}</tr>{"".join(rows)}</table></div>')


def detail_table(rows):
    """Table of the rows not attributed to ``target`` (at most :data:`MAX_ROWS`)."""
    shown = [row for row in rows if row["attribution"] != "target"]
    more = len(shown) - MAX_ROWS
    body = "".join(
        f'<tr><td class="name">{esc(r["dip"])}</td><td>{esc(r["dp"])}</td>'
        f'<td class="name">{esc(r.get("class", ""))}</td><td class="name">{esc(r["condition"])}'
        f'</td><td class="name">{esc(", ".join(r["seen_by"]))}</td><td class="name">'
        f'{esc(", ".join(r["reached_by"]))}</td><td class="name">{esc(r["attribution"])}</td>'
        "</tr>" for r in shown[:MAX_ROWS])
    note = f'<p class="note">… {more} more rows in the ndjson output</p>' if more > 0 else ""
    return ('<div class="scroll"><table><tr><th class="name">target</th><th>port</th>'
            '<th class="name">class</th><th class="name">condition</th><th class="name">seen by'
            '</th><th class="name">reached by</th><th class="name">attribution</th></tr>'
            f"{body}</table></div>{note}")


def render(journal, rows, now):
    """The whole page for ``journal`` (the campaign) and its analysed ``rows`` (a list)."""
    from pathspider.campaign.analyse import tally
    vantages = journal["vantages"]
    counts = tally(rows)
    per_vantage = collections.Counter(r["attribution"] for r in rows)
    title = f"pathspider campaign {journal['id']}: {journal['plugin']} from {len(vantages)} " \
        "vantages"
    info = {k: journal.get(k) for k in ("id", "plugin", "options", "run_options", "vantages",
                                        "targets", "chunk_count", "status", "created")}
    return "\n".join([
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}'
        f"</title><style>{STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="note">made {esc(now)} by pathspider {esc(__version__)}. <b>target</b>: '
        "every vantage that reached the target sees the condition; <b>vantage:NAME</b>: only "
        "that vantage sees it; <b>mixed</b>: otherwise.</p>",
        '<section id="campaign"><h2>Campaign</h2>', metadata_html(info), "</section>",
        '<section id="attributions"><h2>Attributions per condition</h2>',
        f'<p class="note">targets × conditions: {esc(dict(per_vantage))}</p>',
        summary_table(counts, vantages), "</section>",
        '<section id="vantage-effects"><h2>Conditions not seen from every vantage</h2>',
        detail_table(rows), "</section>", "</body></html>\n"])

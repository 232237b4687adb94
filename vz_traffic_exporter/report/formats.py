"""A report's rows as CSV, JSON, a text table or a self-contained HTML page; bytes always as integers."""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Iterable, Sequence
from typing import Optional, TextIO

from .compute import Row

COLUMNS = ("start", "end", "veid", "direction", "bytes", "quota_bytes", "resets", "complete")
FORMATS = ("table", "csv", "json", "html")


def columns(percentile: Optional[str] = None) -> tuple[str, ...]:
    """The columns, with the percentile's (p95_bps) last where the report has one."""
    return COLUMNS if percentile is None else (*COLUMNS, percentile)


def _cells(row: Row, percentile: Optional[str] = None) -> list[str]:
    quota = "" if row.quota_bytes is None else str(row.quota_bytes)
    complete = "true" if row.complete else "false"
    cells = [row.start, row.end, row.veid, row.direction, str(row.bytes), quota, str(row.resets), complete]
    return cells if percentile is None else [*cells, str(row.percentile_bps)]


def _csv_cells(row: Row, percentile: Optional[str] = None) -> tuple[object, ...]:
    """A row's cells as the csv module writes them: what _cells says (None as "", integers as str() says),
    without making the strings first (a month of hours is millions of rows)."""
    complete = "true" if row.complete else "false"
    return (*row[:7], complete) if percentile is None else (*row[:7], complete, row.percentile_bps)


def as_csv(rows: Iterable[Row], percentile: Optional[str] = None, out: Optional[TextIO] = None) -> str:
    """The rows as CSV, written to out as they come (returned, where out is None)."""
    if out is None:
        buffer = io.StringIO()
        as_csv(rows, percentile, buffer)
        return buffer.getvalue()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns(percentile))
    writer.writerows(_csv_cells(row, percentile) for row in rows)
    return ""


def as_json(rows: Sequence[Row], percentile: Optional[str] = None) -> str:
    names = columns(percentile)
    return json.dumps([dict(zip(names, _values(r, percentile))) for r in rows], indent=1) + "\n"


def as_table(rows: Sequence[Row], percentile: Optional[str] = None) -> str:
    names = columns(percentile)
    cells = [list(names), *(_cells(row, percentile) for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(names))]
    numeric = {4, 5, 6, 8}
    return "".join(
        "  ".join(
            c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths))
        ).rstrip()
        + "\n"
        for line in cells
    )


def _human(nbytes: float) -> str:
    for unit, size in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if abs(nbytes) >= size:
            return f"{nbytes / size:.1f} {unit}"
    return f"{nbytes:.0f} B"


def _chart(veid: str, days: list[str], traffic: dict[str, tuple[int, int]]) -> str:
    """A stacked bar per day, in (below) and out (above), as inline SVG."""
    width, height, left, bottom = 40 + 14 * len(days), 140, 60, 20
    top = max((sum(traffic.get(d, (0, 0))) for d in days), default=0) or 1
    scale = (height - bottom - 10) / top
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{left + width}" height="{height}" '
        f'role="img" aria-label="traffic of {html.escape(veid)} per day">',
        f'<text x="2" y="14" font-size="10">{html.escape(_human(top))}</text>',
        f'<line x1="{left - 2}" y1="{height - bottom}" x2="{left + width}" y2="{height - bottom}" '
        'stroke="#999"/>',
    ]
    for i, day in enumerate(days):
        incoming, outgoing = traffic.get(day, (0, 0))
        x = left + 14 * i
        y_in = height - bottom - incoming * scale
        y_out = y_in - outgoing * scale
        parts.append(
            f'<rect class="bar in" x="{x}" y="{y_in:.1f}" width="10" height="{incoming * scale:.1f}" '
            f'fill="#4878d0"><title>{html.escape(day)} in {incoming} B</title></rect>'
        )
        parts.append(
            f'<rect class="bar out" x="{x}" y="{y_out:.1f}" width="10" height="{outgoing * scale:.1f}" '
            f'fill="#ee854a"><title>{html.escape(day)} out {outgoing} B</title></rect>'
        )
        if i % 7 == 0:
            parts.append(f'<text x="{x}" y="{height - 5}" font-size="9">{html.escape(day[5:])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def as_html(rows: Sequence[Row], title: str, about: Sequence[tuple[str, str]] = (), top: int = 20) -> str:
    """One page, nothing loaded from elsewhere: a table per container and, for the top ones by total,
    a chart of in and out per day.  rows: per day or finer, so that the days can be drawn."""
    totals: dict[str, dict[str, int]] = {}
    quotas: dict[str, dict[str, Optional[int]]] = {}
    per_day: dict[str, dict[str, tuple[int, int]]] = {}
    days: list[str] = []
    incomplete = {r.veid for r in rows if not r.complete}
    for r in rows:
        totals.setdefault(r.veid, {"in": 0, "out": 0, "total": 0})[r.direction] += r.bytes
        quotas.setdefault(r.veid, {})[r.direction] = r.quota_bytes
        day = r.start[:10]
        if day not in days:
            days.append(day)
        if r.direction in ("in", "out"):
            incoming, outgoing = per_day.setdefault(r.veid, {}).get(day, (0, 0))
            if r.direction == "in":
                incoming += r.bytes
            else:
                outgoing += r.bytes
            per_day[r.veid][day] = (incoming, outgoing)
    head = "".join(f"<th>{c}</th>" for c in ("direction", "bytes", "", "quota", "over"))
    sections = []
    for veid in sorted(totals):
        lines = []
        for direction in ("in", "out", "total"):
            nbytes, quota = totals[veid][direction], quotas[veid].get(direction)
            over = "" if quota is None else (_human(nbytes - quota) if nbytes > quota else "no")
            lines.append(
                f"<tr><td>{direction}</td><td>{nbytes}</td><td>{html.escape(_human(nbytes))}</td>"
                f"<td>{'' if quota is None else quota}</td><td>{html.escape(over)}</td></tr>"
            )
        note = ' <small class="incomplete">(incomplete: a series had no known start)</small>'
        note = note if veid in incomplete else ""
        sections.append(
            f'<section class="container"><h2>{html.escape(veid)}{note}</h2>'
            f"<table><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(lines)}</tbody></table></section>"
        )
    ranked = sorted(totals, key=lambda v: (-totals[v]["total"], v))[:top]
    charts = "".join(
        f"<figure><figcaption>{html.escape(veid)}</figcaption>"
        f"{_chart(veid, days, per_day.get(veid, {}))}</figure>"
        for veid in ranked
    )
    facts = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in about)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:sans-serif;margin:1em 2em}td,th{padding:2px 8px}td:nth-child(2){text-align:right}"
        "section.container{display:inline-block;vertical-align:top;margin:0 2em 1em 0}"
        "figure{display:inline-block;margin:0 1em 1em 0}dt{font-weight:bold;float:left;margin-right:.5em}"
        ".in{fill:#4878d0}.out{fill:#ee854a}"
        f"</style></head><body><h1>{html.escape(title)}</h1><dl>{facts}</dl>"
        f"<h2>Per day, the {len(ranked)} largest (in blue below, out orange above)</h2>{charts}"
        f"<h2>Per container</h2>{''.join(sections)}</body></html>\n"
    )


def write(
    rows: Iterable[Row],
    fmt: str,
    out: TextIO,
    title: str,
    about: Sequence[tuple[str, str]] = (),
    percentile: Optional[str] = None,
) -> None:
    """Write the rows as they come (CSV and JSON), or all of them once read (table, HTML).

    percentile: the name of the percentile's column (p95_bps), where the rows have one (not for HTML).
    """
    if fmt == "csv":
        as_csv(rows, percentile, out)
    elif fmt == "json":
        names = columns(percentile)
        out.write("[")
        for i, row in enumerate(rows):
            out.write(("," if i else "") + "\n " + json.dumps(dict(zip(names, _values(row, percentile)))))
        out.write("\n]\n")
    else:
        out.write(render(list(rows), fmt, title, about, percentile))


def _values(row: Row, percentile: Optional[str] = None) -> tuple[object, ...]:
    values = (
        row.start,
        row.end,
        row.veid,
        row.direction,
        row.bytes,
        row.quota_bytes,
        row.resets,
        row.complete,
    )
    return values if percentile is None else (*values, row.percentile_bps)


def render(
    rows: Sequence[Row],
    fmt: str,
    title: str,
    about: Sequence[tuple[str, str]] = (),
    percentile: Optional[str] = None,
) -> str:
    if fmt == "csv":
        return as_csv(rows, percentile)
    if fmt == "json":
        return as_json(rows, percentile)
    if fmt == "html":
        return as_html(rows, title, about)
    return as_table(rows, percentile)

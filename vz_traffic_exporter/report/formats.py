"""A report's rows as CSV, JSON, a text table or a self-contained HTML page; bytes always as integers."""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Sequence

from .compute import Row

COLUMNS = ("start", "end", "veid", "direction", "bytes", "quota_bytes", "resets")
FORMATS = ("table", "csv", "json", "html")


def _cells(row: Row) -> list[str]:
    quota = "" if row.quota_bytes is None else str(row.quota_bytes)
    return [row.start, row.end, row.veid, row.direction, str(row.bytes), quota, str(row.resets)]


def as_csv(rows: Sequence[Row]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(_cells(row) for row in rows)
    return out.getvalue()


def as_json(rows: Sequence[Row]) -> str:
    return (
        json.dumps(
            [
                {
                    "start": r.start,
                    "end": r.end,
                    "veid": r.veid,
                    "direction": r.direction,
                    "bytes": r.bytes,
                    "quota_bytes": r.quota_bytes,
                    "resets": r.resets,
                }
                for r in rows
            ],
            indent=1,
        )
        + "\n"
    )


def as_table(rows: Sequence[Row]) -> str:
    cells = [list(COLUMNS), *(_cells(row) for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    numeric = {4, 5, 6}
    return "".join(
        "  ".join(
            c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths))
        ).rstrip()
        + "\n"
        for line in cells
    )


def as_html(rows: Sequence[Row], title: str) -> str:
    """One page, nothing loaded from elsewhere: the rows as a table."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in _cells(row)) + "</tr>\n" for row in rows
    )
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>'
        f"{html.escape(title)}</title><style>body{{font-family:sans-serif}}td,th{{padding:2px 8px}}"
        "td:nth-child(n+5){text-align:right}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><table><thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>"
        "</body></html>\n"
    )


def render(rows: Sequence[Row], fmt: str, title: str) -> str:
    if fmt == "csv":
        return as_csv(rows)
    if fmt == "json":
        return as_json(rows)
    if fmt == "html":
        return as_html(rows, title)
    return as_table(rows)

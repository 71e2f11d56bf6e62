"""A query result as an aligned terminal table, CSV, or JSON.

Money stays exact: a `Decimal` is printed with all its significant digits (at least two
decimals in a table; the full nine-digit value in CSV and as a JSON string), never via float.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

FORMATS = ("table", "csv", "json")


def _decimal_text(value: Decimal, *, min_places: int) -> str:
    """Exact digits without trailing zeros beyond `min_places` (`0E-9` -> `0.00`)."""
    text = format(value.normalize() if value != 0 else Decimal(0), "f")
    whole, _, fraction = text.partition(".")
    fraction = fraction.rstrip("0").ljust(min_places, "0")
    return f"{whole}.{fraction}" if fraction else whole


def _datetime_text(value: datetime) -> str:
    text = value.strftime("%Y-%m-%d %H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond // 1000:03d}"
    return text


def cell_text(value: Any) -> str:
    """How one value reads in a table cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Decimal):
        return _decimal_text(value, min_places=2)
    if isinstance(value, float):
        return f"{value:.1f}" if value == int(value) else f"{value:.3f}".rstrip("0")
    if isinstance(value, datetime):
        return _datetime_text(value)
    if isinstance(value, (list, tuple)):
        return ",".join(cell_text(item) for item in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True) if value else ""
    return str(value)


def _numeric(values: Sequence[Any]) -> bool:
    present = [v for v in values if v is not None]
    return bool(present) and all(
        isinstance(v, (int, float, Decimal)) and not isinstance(v, bool) for v in present
    )


def render_table(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    footer: Sequence[Any] | None = None,
) -> str:
    """Columns padded to their widest cell; numbers right-aligned; an optional footer row
    (a total) under a rule."""
    if not rows:
        return "(no rows)\n"
    body = [[cell_text(v) for v in row] for row in rows]
    foot = [cell_text(v) for v in footer] if footer is not None else None
    numeric = [_numeric([row[i] for row in rows]) for i in range(len(columns))]
    every = [list(columns), *body, *([foot] if foot else [])]
    widths = [max(len(line[i]) for line in every) for i in range(len(columns))]

    def line(cells: Sequence[str]) -> str:
        padded = (
            cell.rjust(width) if is_number else cell.ljust(width)
            for cell, width, is_number in zip(cells, widths, numeric, strict=True)
        )
        return "  ".join(padded).rstrip()

    rule = "  ".join("-" * width for width in widths)
    out = [line(columns), rule, *(line(cells) for cells in body)]
    if foot:
        out += [rule, line(foot)]
    return "\n".join(out) + "\n"


def _plain(value: Any) -> Any:
    """A JSON-ready value: Decimal as an exact string, times as ISO 8601."""
    if isinstance(value, Decimal):
        return _decimal_text(value, min_places=0) if value != 0 else "0"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def render_csv(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """RFC 4180 CSV with a header row; empty cell for NULL, exact Decimals, ISO times."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        cells = []
        for value in row:
            plain = _plain(value)
            if plain is None:
                cells.append("")
            elif isinstance(plain, bool):
                cells.append("true" if plain else "false")
            elif isinstance(plain, (list, dict)):
                cells.append(json.dumps(plain, sort_keys=True))
            else:
                cells.append(str(plain))
        writer.writerow(cells)
    return buffer.getvalue()


def render_json(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A JSON array of objects, one per row; money as exact decimal strings."""
    records = [{c: _plain(v) for c, v in zip(columns, row, strict=True)} for row in rows]
    return json.dumps(records, indent=2) + "\n"


def render(
    fmt: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    footer: Sequence[Any] | None = None,
) -> str:
    """Render in `fmt` (table, csv or json); the footer only shows in tables."""
    if fmt == "table":
        return render_table(columns, rows, footer=footer)
    if fmt == "csv":
        return render_csv(columns, rows)
    if fmt == "json":
        return render_json(columns, rows)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")


__all__ = ["FORMATS", "cell_text", "render", "render_csv", "render_json", "render_table"]

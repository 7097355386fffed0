"""The printed table, the ratios and the JSON file."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.stats import Row

# Hits over the ceiling's throughput that the issue asks for on the 2-core machine.
# The goals on 2 cores: GetToken from the first benchmark issue, AuthorizeRequest from issue 12 (0.5 before).
TARGET_RATIOS = {"get_token": 0.8, "authorize": 0.85}


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _cores(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(rows: Sequence[Row]) -> str:
    """Columns are separated by at least two spaces; labels hold single spaces only."""
    header = [
        "row",
        "calls/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "errors",
        "broker cpu",
        "client cpu",
        "STS cpu",
        "other cpu",
        "STS reqs",
    ]
    lines = [header]
    for row in rows:
        lines.append(
            [
                row.label,
                f"{row.calls_per_s:.0f}",
                _ms(row.p50_ms),
                _ms(row.p90_ms),
                _ms(row.p99_ms),
                str(row.errors),
                _cores(row.cores.get("broker")),
                _cores(row.cores.get("clients")),
                _cores(row.cores.get("sts")),
                _cores(row.cores.get("other")),
                "-" if row.sts_token_requests is None else str(row.sts_token_requests),
            ]
        )
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    out = []
    for line in lines:
        cells = [line[0].ljust(widths[0])] + [
            cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)
        ]
        out.append("  ".join(cells))
    return "\n".join(out)


def ratios(rows: Sequence[Row]) -> dict[str, float | None]:
    by_key = {row.key: row for row in rows}
    ceiling = by_key.get("ceiling")
    result: dict[str, float | None] = {}
    for key in TARGET_RATIOS:
        row = by_key.get(key)
        ok = ceiling is not None and row is not None and ceiling.calls_per_s > 0
        result[key] = row.calls_per_s / ceiling.calls_per_s if ok and row and ceiling else None
    return result


def ratio_lines(rows: Sequence[Row]) -> list[str]:
    names = {"get_token": "GetToken hits / ceiling", "authorize": "AuthorizeRequest hits / ceiling"}
    lines = []
    for key, value in ratios(rows).items():
        shown = "-" if value is None else f"{value:.2f}"
        lines.append(f"{names[key]}: {shown}   (goal on 2 cores: >= {TARGET_RATIOS[key]:.2f})")
    return lines


def sweep_table(results: Sequence[Mapping[str, Any]]) -> str:
    lines = [
        "client procs  in flight/proc  ceiling calls/s  p50 ms  p99 ms  broker cpu  client cpu  other cpu"
    ]
    for result in results:
        lines.append(
            f"{result['clients']:>12}  {result['concurrency']:>14}  {result['calls_per_s']:>15.0f}"
            f"  {_ms(result['p50_ms']):>6}  {_ms(result['p99_ms']):>6}"
            f"  {_cores(result['broker_cores']):>10}  {_cores(result['client_cores']):>10}"
            f"  {_cores(result['other_cores']):>9}"
        )
    return "\n".join(lines)


def write_json(path: Path, document: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def pooled_ratios(rounds: Sequence[Sequence[Row]]) -> dict[str, float | None]:
    """Each hit row's calls over the ceiling's calls, summed over all rounds: a drift of the shared
    machine during one row weighs less than in any single round's ratio."""
    totals: dict[str, float] = {}
    for run in rounds:
        for row in run:
            totals[row.key] = totals.get(row.key, 0.0) + row.calls_per_s
    ceiling = totals.get("ceiling", 0.0)
    return {key: (totals[key] / ceiling if ceiling and key in totals else None) for key in TARGET_RATIOS}


def ratio(rows: Sequence[Row], key: str, ceiling_key: str = "ceiling") -> float | None:
    """Throughput of row `key` over the ceiling row's, or None when either is missing or zero."""
    by_key = {row.key: row for row in rows}
    row, ceiling = by_key.get(key), by_key.get(ceiling_key)
    if row is None or ceiling is None or ceiling.calls_per_s <= 0:
        return None
    return row.calls_per_s / ceiling.calls_per_s


def pooled_ratio(rounds: Sequence[Sequence[Row]], key: str, ceiling_key: str = "ceiling") -> float | None:
    """As `pooled_ratios`, for one row: its calls summed over the rounds over the ceiling's."""
    calls = sum(row.calls_per_s for run in rounds for row in run if row.key == key)
    ceiling = sum(row.calls_per_s for run in rounds for row in run if row.key == ceiling_key)
    return calls / ceiling if ceiling > 0 else None


def plain_table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
    """Columns separated by at least two spaces; the first left-aligned, the others right-aligned."""
    everything = [list(header), *(list(line) for line in lines)]
    widths = [max(len(line[column]) for line in everything) for column in range(len(header))]
    out = []
    for line in everything:
        cells = [line[0].ljust(widths[0])] + [
            cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)
        ]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)

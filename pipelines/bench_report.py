"""How every benchmark reports: a two-column table on stdout and the same as JSON."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table


def report_benchmark(title: str, result: dict, out: Path, caption: str | None = None) -> None:
    """Print ``result`` as a measure/value table and write it to ``out`` as JSON."""
    table = Table(title=title, caption=caption)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in result.items():
        table.add_row(key, f"{value:.2f}" if isinstance(value, float) else str(value))
    Console().print(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    Console().print(f"wrote {out}")

"""Reading which districts each edge site holds from a federation folder's plan.

``federation.json`` (see `datasets.partition_io.write_federation`) lists the
sites in Flower ``partition-id`` order; its ``sites`` list reads as a plain plan.
"""

from __future__ import annotations

import json
from pathlib import Path


def read_site_plan(path: str | Path) -> list[dict]:
    """The ``sites`` list of a plan or ``federation.json``: one dict per site."""
    return json.loads(Path(path).read_text())["sites"]

"""Removing the source files PyG leaves in the temp folder.

PyG renders each message-passing layer's ``propagate`` from a template into a
``NamedTemporaryFile(delete=False)`` and imports it, once per process. The
module stays loaded; the file stays behind. Every simulated site process and
every test process leaves one, so a machine that runs federations gathers
hundreds of them in ``/tmp`` (571 on our development machine). Nothing reads the
file again after the import: RiskNet is not scripted with ``torch.jit``, which
would look the source up; a traceback through ``propagate`` shows no source line.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

_PREFIX = "torch_geometric."
_removed: set[str] = set()


def remove_generated_sources() -> None:
    """Delete the temp-folder source files of the PyG modules this process generated (once each)."""
    temp = Path(tempfile.gettempdir()).resolve()
    for name, module in list(sys.modules.items()):
        source = getattr(module, "__file__", None) if name.startswith(_PREFIX) else None
        if not source or source in _removed:
            continue
        path = Path(source)
        if path.parent.resolve() == temp:
            _removed.add(source)
            path.unlink(missing_ok=True)

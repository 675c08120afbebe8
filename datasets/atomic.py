"""Writing a folder all at once: it appears complete, or the old one stays."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_folder_atomically(target: str | Path, write: Callable[[Path], None]) -> Path:
    """Let ``write`` fill a hidden sibling folder, then swap it in place of ``target``.

    A failure (or an interrupt) while writing removes the staging folder and leaves
    any existing ``target`` untouched, so nothing already stored is lost.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        write(staging)
        if target.exists():
            backup = target.with_name(f".{target.name}.old")
            shutil.rmtree(backup, ignore_errors=True)
            target.rename(backup)
            staging.rename(target)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target

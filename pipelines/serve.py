"""Serving the Streamlit app over the runs folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

APP_FILE = Path(__file__).resolve().parents[1] / "streamlit_app.py"


def serve_app(runs_dir: Path, host: str = "127.0.0.1", port: int = 8501) -> int:
    """Run ``streamlit run`` in the foreground until stopped; returns its exit code."""
    env = {**os.environ, "KIZASHI_RUNS": str(Path(runs_dir).resolve())}
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP_FILE),
        "--server.headless",
        "true",
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--browser.gatherUsageStats",
        "false",
    ]
    try:
        return subprocess.call(command, env=env)
    except KeyboardInterrupt:
        return 0

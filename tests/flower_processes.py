"""Flower's own processes in tests: free ports, waiting for a listener, ending a process tree.

A SuperLink or SuperNode starts further processes (SuperExec, ServerApp,
ClientApp), some in sessions of their own, so ending one means finding its
descendants through /proc.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def _descendants(pid: int) -> list[int]:
    tree, found, todo = _children(), [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def end_process_tree(pid: int) -> None:
    """SIGTERM ``pid`` and every descendant, then SIGKILL those still alive."""
    family = [pid, *_descendants(pid)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for member in family:
            try:
                os.kill(member, sig)
            except ProcessLookupError:
                pass
        time.sleep(3)


def wait_for_port(port: int, seconds: float) -> None:
    """Return once 127.0.0.1:``port`` accepts connections.

    Raises:
        TimeoutError: Nothing listened within ``seconds``.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {seconds} s")


def flower_home(folder: Path, name: str, port: int) -> dict[str, str]:
    """An environment whose ``flwr`` knows one SuperLink, ``name``, on 127.0.0.1:``port``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.toml").write_text(
        f'[superlink]\ndefault = "{name}"\n\n'
        f'[superlink.{name}]\naddress = "127.0.0.1:{port}"\ninsecure = true\n'
    )
    return {
        **os.environ,
        # Flower's commands from this environment, whether or not it is activated.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "FLWR_HOME": str(folder),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
    }


@contextmanager
def running_superlink(folder: Path, name: str, simulation: bool) -> Iterator[tuple[dict, int]]:
    """A SuperLink on a free 127.0.0.1 port, never installing dependencies; ended on exit.

    Yields:
        The environment for ``flwr`` (its FLWR_HOME knows the SuperLink as
        ``name``) and the port, on which the Control and Fleet APIs both listen.
    """
    port = free_port()
    env = flower_home(folder / "flwr-home", name, port)
    command = [
        "flower-superlink",
        "--insecure",
        "--disable-runtime-dependency-installation",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--database",
        str(folder / "superlink-state.db"),
    ]
    if simulation:
        command.append("--simulation")
    log = (folder / "superlink.log").open("w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, 60)
        yield env, port
    finally:
        end_process_tree(process.pid)
        process.wait(timeout=30)
        log.close()

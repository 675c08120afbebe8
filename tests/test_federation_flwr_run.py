"""The app under stock ``flwr run`` against a local simulation SuperLink (2 rounds, 5 sites).

The test starts ``flower-superlink --simulation`` on a free 127.0.0.1 port in a
temporary FLWR_HOME, always with ``--disable-runtime-dependency-installation``,
and ends the SuperLink and every process it started (the SuperExec runs in a
session of its own, so its processes are found through /proc). About 70 s here.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.federation_helpers import N_SITES, tiny_partitions

__all__ = ["tiny_partitions"]
ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
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


def _end(pid: int) -> None:
    """SIGTERM ``pid`` and every descendant, then SIGKILL those still alive."""
    family = [pid, *_descendants(pid)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for member in family:
            try:
                os.kill(member, sig)
            except ProcessLookupError:
                pass
        time.sleep(3)


def _wait_for_port(port: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"no SuperLink on 127.0.0.1:{port} after {seconds} s")


@pytest.fixture
def superlink(tmp_path):
    home, port = tmp_path / "flwr-home", _free_port()
    home.mkdir()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "simtest"\n\n'
        f'[superlink.simtest]\naddress = "127.0.0.1:{port}"\ninsecure = true\n'
    )
    env = {
        **os.environ,
        # Flower's commands from this environment, whether or not it is activated.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "FLWR_HOME": str(home),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
    }
    command = [
        "flower-superlink",
        "--insecure",
        "--simulation",
        "--disable-runtime-dependency-installation",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    log = (tmp_path / "superlink.log").open("w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for_port(port, 60)
        yield env
    finally:
        _end(process.pid)
        process.wait(timeout=30)
        log.close()


@pytest.mark.slow
def test_flwr_run_against_a_simulation_superlink(
    superlink, tiny_partitions, tiny_city_dir, tmp_path
):
    run_dir = tmp_path / "run"
    overrides = tmp_path / "run-config.toml"
    overrides.write_text(
        f'partitions-dir = "{tiny_partitions}"\neval-city-dir = "{tiny_city_dir}"\n'
        f'run-dir = "{run_dir}"\npreset = "tiny"\nnum-rounds = 2\n'
    )
    command = [
        "flwr",
        "run",
        str(ROOT),
        "simtest",
        "--stream",
        "--federation-config",
        f"num-supernodes={N_SITES}",
        "--run-config",
        str(overrides),
    ]
    result = subprocess.run(
        command, env=superlink, capture_output=True, text=True, timeout=420, cwd=tmp_path
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rounds = [line for line in lines if line["kind"] == "round"]
    assert [line["round"] for line in rounds] == [1, 2]
    assert all(len(line["sites"]) == N_SITES for line in rounds)
    assert (run_dir / "checkpoints" / "round-0002").is_dir()
    assert (run_dir / "model" / "model.safetensors").exists()

"""The app under stock ``flwr run`` against a local simulation SuperLink (2 rounds, 5 sites).

The test starts ``flower-superlink --simulation`` on a free 127.0.0.1 port in a
temporary FLWR_HOME, always with ``--disable-runtime-dependency-installation``,
and ends the SuperLink and every process it started (the SuperExec runs in a
session of its own, so its processes are found through /proc). About 70 s here.
"""

import json
import subprocess
from pathlib import Path

import pytest

from tests.federation_helpers import N_SITES, tiny_partitions
from tests.flower_processes import running_superlink

__all__ = ["tiny_partitions"]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def superlink(tmp_path):
    with running_superlink(tmp_path, "simtest", simulation=True) as (env, _):
        yield env


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

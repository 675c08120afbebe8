"""Federations in Flower's simulation engine (Ray): a SIGKILLed run resumes; sites fail.

Each test starts Ray at least once (20-40 s on a busy 2-core machine), so both are
``slow`` (measured here: kill + resume ~120 s, failures ~60 s); the same logic
runs fast over an in-process grid in ``test_federation_rounds.py``.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from flwr.clientapp import ClientApp

from datasets.partition import PartitionSpec, partition_city
from datasets.partition_io import write_federation
from fedcore.federation.client_app import train
from fedcore.federation.simulation import simulate_federation
from tests.federation_helpers import N_SITES, tiny_partitions, tiny_settings

__all__ = ["tiny_partitions"]
ROOT = Path(__file__).resolve().parents[1]
FAILING_PARTITIONS = {0, 3, 7}  # 30% of 10 sites
FAILING_ROUND = 2

chaos_app = ClientApp()


@chaos_app.train()
def train_or_fail(msg, context):
    """Test-only site app: partitions in FAILING_PARTITIONS raise in round FAILING_ROUND."""
    partition = int(context.node_config["partition-id"])
    if partition in FAILING_PARTITIONS and msg.content["config"]["server-round"] == FAILING_ROUND:
        raise RuntimeError(f"chaos: partition {partition} fails in round {FAILING_ROUND}")
    return train(msg, context)


def _lines(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _kizashi(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipelines.cli", "federate", *args, "--cores", "2"]


@pytest.mark.slow
def test_sigkilled_run_resumes_with_every_round_once(tiny_partitions, tiny_city_dir, tmp_path):
    runs = tmp_path / "runs"
    planned, kill_after = 4, 2
    command = _kizashi(
        str(tiny_partitions),
        "--eval-city",
        str(tiny_city_dir),
        "--rounds",
        str(planned),
        "--preset",
        "tiny",
        "--strategy",
        "fedadam",
        "--runs-dir",
        str(runs),
    )
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            done = list(runs.glob(f"*/checkpoints/round-{kill_after:04d}/state.json"))
            if done or process.poll() is not None:
                break
            time.sleep(0.05)
        assert process.poll() is None, f"run ended before the kill: {process.stderr.read()[-2000:]}"
        assert done, "no checkpoint within 300 s"
        os.killpg(process.pid, signal.SIGKILL)  # the whole session: driver, Ray, workers
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    (run_dir,) = runs.iterdir()
    killed_at = max(int(p.name[-4:]) for p in (run_dir / "checkpoints").glob("round-*"))
    assert kill_after <= killed_at < planned
    assert not (run_dir / "model").exists()

    resumed = subprocess.run(
        _kizashi("--resume", str(run_dir)), cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"round {planned}/{planned}" in resumed.stderr
    rounds = [line["round"] for line in _lines(run_dir) if line["kind"] == "round"]
    assert rounds == list(range(1, planned + 1))
    sites = [(line["round"], line["site"]) for line in _lines(run_dir) if line["kind"] == "site"]
    assert len(sites) == len(set(sites)) == planned * N_SITES
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "finished"
    assert (run_dir / "model" / "model.safetensors").exists()


@pytest.fixture(scope="module")
def ten_sites(tiny_city, tmp_path_factory):
    spec = PartitionSpec(n_sites=10, dirichlet_alpha=0.1, share_without_cameras=0.3, seed=1)
    return write_federation(
        partition_city(tiny_city, spec), tiny_city, tmp_path_factory.mktemp("ten") / "parts"
    )


@pytest.mark.slow
def test_round_completes_when_30_percent_of_sites_raise(ten_sites, tiny_city_dir, tmp_path):
    settings = tiny_settings(ten_sites, tiny_city_dir, tmp_path, num_rounds=2, min_train_sites=5)
    simulate_federation(settings, 10, cores=2, client_app=chaos_app)
    rounds = [line for line in _lines(tmp_path) if line["kind"] == "round"]
    assert [line["round"] for line in rounds] == [1, 2]
    assert rounds[0]["failures"] == [] and len(rounds[0]["sites"]) == 10
    failed = {failure["site"]: failure["error"] for failure in rounds[1]["failures"]}
    assert set(failed) == {f"site-{k:03d}" for k in FAILING_PARTITIONS}
    assert all("chaos: partition" in error for error in failed.values())
    assert len(rounds[1]["sites"]) == 7
    assert (tmp_path / "checkpoints" / "round-0002").is_dir()

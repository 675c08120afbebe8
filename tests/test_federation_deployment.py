"""Flower's deployment runtime: three sites run ``kizashi join``, the operator ``flwr run``.

A deployment SuperLink (no ``--simulation``) serving HTTPS with a throwaway
certificate authority's certificate on a free 127.0.0.1 port; three sites each
start ``kizashi join`` on their own folder with that authority's root
certificate, their own Flower home and runtime port, as partners on three
machines would; ``flwr run`` then federates 2 rounds over them. Every process
is ended afterwards. About 5 minutes on 2 busy cores: Flower starts a fresh
ClientApp process, which imports torch, for every message.
"""

import json
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from tests.federation_helpers import tiny_partitions
from tests.flower_processes import end_process_tree, free_port, running_superlink, tls_files

__all__ = ["tiny_partitions"]
ROOT = Path(__file__).resolve().parents[1]
SITES = ("site-000", "site-001", "site-002")


def _assert_speaks_tls_with(port: int, ca: Path) -> None:
    """The SuperLink's certificate chains to ``ca`` and to nothing a machine trusts by default."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ssl.create_default_context(cafile=str(ca)).wrap_socket(
            raw, server_hostname="127.0.0.1"
        ) as wrapped:
            assert wrapped.version() is not None
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):
            ssl.create_default_context().wrap_socket(raw, server_hostname="127.0.0.1")


@pytest.mark.slow
def test_sites_join_a_deployment_superlink_and_federate(tiny_partitions, tiny_city_dir, tmp_path):
    tls = tls_files(tmp_path / "tls")
    with running_superlink(tmp_path, "deploytest", simulation=False, tls=tls) as (env, port):
        _assert_speaks_tls_with(port, tls["ca"])
        env = {**env, "PYTHONPATH": str(ROOT)}  # the checkout under test, not another install
        nodes = []
        for site in SITES:
            command = [
                sys.executable,
                "-m",
                "pipelines.cli",
                "join",
                f"127.0.0.1:{port}",
                "--site-dir",
                str(tiny_partitions / "sites" / site),
                "--root-certificates",
                str(tls["ca"]),
                "--port",
                str(free_port()),
                "--flwr-home",
                str(tmp_path / site),
            ]
            log = (tmp_path / f"{site}.log").open("w")
            nodes.append(
                (subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT), log)
            )
        try:
            run_dir = tmp_path / "run"
            overrides = tmp_path / "run-config.toml"
            overrides.write_text(
                f'partitions-dir = "{tiny_partitions}"\neval-city-dir = "{tiny_city_dir}"\n'
                f'run-dir = "{run_dir}"\npreset = "tiny"\nnum-rounds = 2\n'
                f"min-available-sites = {len(SITES)}\nmin-train-sites = {len(SITES)}\n"
            )
            command = ["flwr", "run", str(ROOT), "deploytest", "--stream"]
            result = subprocess.run(
                [*command, "--run-config", str(overrides)],
                env=env,
                capture_output=True,
                text=True,
                timeout=540,
                cwd=tmp_path,
            )
        finally:
            for process, log in nodes:
                end_process_tree(process.pid)
                process.wait(timeout=30)
                log.close()
        joined = {site: (tmp_path / f"{site}.log").read_text() for site in SITES}
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    for site, output in joined.items():
        assert f"as {site} (1 thread)" in output, output[-2000:]
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rounds = [line for line in lines if line["kind"] == "round"]
    assert [line["round"] for line in rounds] == [1, 2]
    for line in rounds:
        assert sorted(line["sites"]) == list(SITES)
        assert line["failures"] == []
    assert (run_dir / "checkpoints" / "round-0002").is_dir()
    assert (run_dir / "model" / "model.safetensors").exists()

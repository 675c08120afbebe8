"""Flower's deployment runtime: partners run ``kizashi join``, the operator ``flwr run``.

A deployment SuperLink (no ``--simulation``) on a free 127.0.0.1 port serves
HTTPS with a throwaway certificate authority's certificate and admits only
SuperNodes whose keys the operator registered. Three sites each run ``kizashi
join`` on their own folder with that authority's root certificate, their own
registered key, Flower home and runtime port, as partners on three machines
would; a fourth joins with a key nobody registered and must be turned away.
``flwr run`` then federates 2 rounds over the three. Every process is ended
afterwards. About 5 minutes on 2 busy cores: Flower starts a fresh ClientApp
process, which imports torch, for every message."""

import json
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from tests.federation_helpers import tiny_partitions
from tests.flower_processes import (
    end_process_tree,
    free_port,
    node_key_pair,
    running_superlink,
    tls_files,
)

__all__ = ["tiny_partitions"]
ROOT = Path(__file__).resolve().parents[1]
SITES = ("site-000", "site-001", "site-002")
ROGUE = "site-003"  # joins with a key the operator never registered


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


def _join(site_dir: Path, port: int, tls: dict, key: Path, home: Path, env: dict, log):
    """``kizashi join`` for one site, as a partner runs it (TLS, its node key)."""
    command = [sys.executable, "-m", "pipelines.cli", "join", f"127.0.0.1:{port}"]
    command += ["--site-dir", str(site_dir), "--root-certificates", str(tls["ca"])]
    command += ["--auth-key", str(key), "--port", str(free_port()), "--flwr-home", str(home)]
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_sites_join_a_deployment_superlink_and_federate(tiny_partitions, tiny_city_dir, tmp_path):
    tls = tls_files(tmp_path / "tls")
    keys = {site: node_key_pair(tmp_path / "keys", site) for site in (*SITES, ROGUE)}
    superlink = running_superlink(tmp_path, "deploytest", False, tls=tls, node_auth=True)
    with superlink as (env, port):
        _assert_speaks_tls_with(port, tls["ca"])
        env = {**env, "PYTHONPATH": str(ROOT)}  # the checkout under test, not another install
        for site in SITES:  # the operator admits the partners' keys; not the rogue's
            register = ["flwr", "supernode", "register", str(keys[site][1]), "deploytest"]
            registered = subprocess.run(register, env=env, capture_output=True, text=True)
            assert registered.returncode == 0, registered.stdout + registered.stderr
        nodes = {}
        for site in (*SITES, ROGUE):
            log = (tmp_path / f"{site}.log").open("w")
            site_dir = tiny_partitions / "sites" / site
            process = _join(site_dir, port, tls, keys[site][0], tmp_path / site, env, log)
            nodes[site] = (process, log)
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
            rogue_exit = nodes[ROGUE][0].poll()
        finally:
            for process, log in nodes.values():
                end_process_tree(process.pid)
                process.wait(timeout=30)
                log.close()
        joined = {site: (tmp_path / f"{site}.log").read_text() for site in (*SITES, ROGUE)}
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    for site in SITES:
        assert f"as {site} (1 thread)" in joined[site], joined[site][-2000:]
    assert rogue_exit not in (None, 0), joined[ROGUE][-2000:]  # refused, and gave up
    assert "Failed to activate SuperNode" in joined[ROGUE], joined[ROGUE][-2000:]
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [line["sites"] for line in lines if line["kind"] == "roll-call"] == [len(SITES)]
    rounds = [line for line in lines if line["kind"] == "round"]
    assert [line["round"] for line in rounds] == [1, 2]
    for line in rounds:
        assert sorted(line["sites"]) == list(SITES)
        assert line["failures"] == []
    assert (run_dir / "checkpoints" / "round-0002").is_dir()
    assert (run_dir / "model" / "model.safetensors").exists()

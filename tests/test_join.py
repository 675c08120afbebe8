"""``kizashi join``: a site checks its folder, then hands over to a Flower SuperNode.

No SuperNode starts here: the launch is recorded instead. The end-to-end join
against a deployment SuperLink is `tests/test_federation_deployment.py` (slow).
"""

import os
import shutil
from pathlib import Path

import pytest
from flwr.common.config import parse_config_args
from typer.testing import CliRunner

from fedcore.federation.task import site_threads
from pipelines import join as join_module
from pipelines.cli import app
from pipelines.join import JoinError, JoinOptions, join, supernode_command, write_node_config
from tests.federation_helpers import tiny_partitions

__all__ = ["tiny_partitions"]


def _options(site_dir: Path, **changes) -> JoinOptions:
    return JoinOptions(**{"superlink": "fed.example:9091", "site_dir": site_dir, **changes})


def test_a_site_connects_over_tls_unless_it_asks_for_plain_http(tmp_path):
    site = tmp_path / "site"
    with pytest.raises(JoinError, match="root-certificates"):
        _options(site).check()
    _options(site, insecure=True).check()
    with pytest.raises(JoinError, match="no such file"):
        _options(site, root_certificates=tmp_path / "ca.pem").check()
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    _options(site, root_certificates=tmp_path / "ca.pem").check()
    with pytest.raises(JoinError, match="contradict"):
        _options(site, root_certificates=tmp_path / "ca.pem", insecure=True).check()
    with pytest.raises(JoinError, match="host:port"):
        _options(site, superlink="fed.example", insecure=True).check()
    with pytest.raises(JoinError, match="threads"):
        _options(site, insecure=True, threads=0).check()


def test_the_supernode_gets_tls_the_site_key_and_no_dependency_installation(tmp_path):
    keys = {name: tmp_path / name for name in ("ca.pem", "site.key", "trusted.yaml")}
    options = _options(
        tmp_path / "site",
        root_certificates=keys["ca.pem"],
        auth_key=keys["site.key"],
        trusted_entities=keys["trusted.yaml"],
        port=9105,
    )
    command = supernode_command(options, tmp_path / "node.toml")
    assert Path(command[0]).name == "flower-supernode"
    flags = dict(zip(command[1::2], command[2::2], strict=True))
    assert flags == {
        "--superlink": "fed.example:9091",
        "--node-config": str(tmp_path / "node.toml"),
        "--root-certificates": str(keys["ca.pem"]),
        "--auth-supernode-private-key": str(keys["site.key"]),
        "--trusted-entities": str(keys["trusted.yaml"]),
        "--port": "9105",
    }
    insecure = supernode_command(_options(tmp_path, insecure=True), tmp_path / "node.toml")
    assert "--insecure" in insecure and "--root-certificates" not in insecure
    assert not any("dependency" in part for part in command + insecure)


def test_the_node_config_reaches_flower_whatever_the_path(tmp_path):
    site = tmp_path / 'partner "north" ward\'s data, Kōtō 🌊' / "site-000"
    options = _options(
        site, public_dir=tmp_path / "pub lic", threads=3, unlabelled_domains=("crowd", "safety")
    )
    written = write_node_config(options, tmp_path / "home")
    parsed = parse_config_args([str(written)])
    assert parsed == options.node_config()
    assert parsed["site-dir"] == str(site.resolve())
    assert parsed["threads"] == 3
    assert parsed["unlabelled-domains"] == "crowd,safety"
    assert write_node_config(options, tmp_path / "home") == written  # a rejoin replaces it
    assert [path.name for path in (tmp_path / "home").iterdir()] == [written.name]


def test_site_threads_come_from_the_node_config():
    assert site_threads({}) == 1
    assert site_threads({"threads": 4}) == 4
    for bad in (0, -1, "2", True, 1.5):
        with pytest.raises(ValueError, match="threads"):
            site_threads({"threads": bad})


def test_join_says_what_the_site_holds_then_hands_over(tiny_partitions, tmp_path):
    site = tiny_partitions / "sites" / "site-001"
    options = _options(site, insecure=True, threads=2, flwr_home=tmp_path / "home")
    said, launched = [], []
    join(options, said.append, lambda argv, env: launched.append((argv, env)))
    [table, joining] = said
    [row] = [line.split() for line in table.splitlines() if "site-001" in line]
    assert row[:2] == ["site-001", "1"]  # the site's line of `kizashi city partitions`
    assert joining == "joining fed.example:9091 as site-001 (2 threads)"
    [(argv, env)] = launched
    assert env["FLWR_HOME"] == str(tmp_path / "home")
    cache = tmp_path / "home" / "kizashi" / "cache"
    assert env["KIZASHI_CACHE_DIR"] == str(cache)
    assert [path.suffix for path in cache.iterdir()] == [".sqlite"]  # the check filled it
    assert "KIZASHI_CACHE_DIR" not in os.environ
    node_config = argv[argv.index("--node-config") + 1]
    assert parse_config_args([node_config])["site-dir"] == str(site.resolve())


def test_a_broken_site_is_named_before_anything_connects(tiny_partitions, tmp_path, monkeypatch):
    site = tmp_path / "parts" / "sites" / "site-002"
    shutil.copytree(tiny_partitions / "sites" / "site-002", site)
    shutil.copytree(tiny_partitions / "public", tmp_path / "parts" / "public")
    (site / "sensors.nc").write_bytes(b"not netcdf")
    launched = []
    monkeypatch.setattr(join_module.os, "execvpe", lambda *args: launched.append(args))
    result = CliRunner().invoke(
        app, ["join", "127.0.0.1:9091", "--site-dir", str(site), "--insecure"]
    )
    assert result.exit_code == 2
    assert "sensors.nc" in result.output and "Traceback" not in result.output
    assert launched == []
    result = CliRunner().invoke(app, ["join", "127.0.0.1:9091", "--site-dir", str(site)])
    assert result.exit_code == 2 and "--insecure" in result.output
    (site / "sensors.nc").write_bytes((tiny_partitions / "sites/site-002/sensors.nc").read_bytes())
    result = CliRunner().invoke(
        app, ["join", "127.0.0.1:9091", "--site-dir", str(site), "--insecure"]
    )
    assert result.exit_code == 0, result.output
    assert len(launched) == 1
    assert "site-002" in result.output and "joining 127.0.0.1:9091 as site-002" in result.output

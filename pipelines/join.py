"""A partner's site joins a federation: check its folder, then run a Flower SuperNode on it.

``kizashi join`` is the one command a partner runs. It reads the site folder the
way training will (so a broken file is named before anything connects), says
what the site holds, writes the SuperNode's node config and hands over to
Flower's ``flower-supernode``. This project's ClientApp sends the server model
updates and the metrics `fedcore.federation.client_app` reports, plus, in runs
that turn on neighbour exchange, sums over the site's districts
(`fedcore.federation.neighbour_exchange`); no record, frame or reading leaves.
The code a site runs comes from the SuperLink, though, which is why a partner
may want ``--trusted-entities``.

Safe by default:
- TLS: the SuperNode verifies the SuperLink's certificate against the
  partner's ``--root-certificates``; plain HTTP needs an explicit ``--insecure``.
- ``--auth-key`` signs the node in with its private key, for SuperLinks that
  admit only listed sites; ``--trusted-entities`` runs only apps signed by keys
  the partner trusts.
- Flower installs no Python packages the server's app asks for: the SuperNode
  runs without ``--allow-runtime-dependency-installation``.

Flower starts a fresh ClientApp process for every message, so the node keeps
the site's report embeddings on disk (``KIZASHI_CACHE_DIR``): the join's own
check fills the store, and no round embeds a report again.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from datasets.partition_io import load_site, read_site_info
from fedcore.federation.settings import FederationSettings
from fedcore.federation.task import data_settings, site_folders, site_samples, site_threads
from fedcore.model.embedding_store import CACHE_DIR_VARIABLE
from pipelines.partition_commands import SiteSummary, summarize_sites, summary_table

SUPERNODE = "flower-supernode"


class JoinError(ValueError):
    """The join command cannot start as asked (a missing certificate, a bad option)."""


@dataclass(frozen=True)
class JoinOptions:
    """How a site joins.

    Attributes:
        superlink: The federation's SuperLink as ``host:port``.
        site_dir: The site's folder (``site.json``, sensors, frames, records).
        public_dir: The federation's public layer; by default
            ``<site-dir>/../../public``, where `write_federation` puts it.
        root_certificates: PEM root certificate(s) that the SuperLink's TLS
            certificate must chain to.
        insecure: Connect over plain HTTP (test set-ups on one machine only).
        auth_key: The site's private key, for SuperLinks with node authentication.
        trusted_entities: Flower's YAML of public keys whose signed apps this
            site runs.
        threads: CPU threads the site trains with.
        port: Local port of the SuperNode's runtime API (one per node on a host).
        unlabelled_domains: Domains this partner does not record.
        flwr_home: Flower's state folder for this node (``FLWR_HOME``); Flower's
            default when None.
        cache_dir: Where the site keeps its report embeddings between rounds
            (`fedcore.model.embedding_store`); ``<flwr-home>/kizashi/cache`` when None.
    """

    superlink: str
    site_dir: Path
    public_dir: Path | None = None
    root_certificates: Path | None = None
    insecure: bool = False
    auth_key: Path | None = None
    trusted_entities: Path | None = None
    threads: int = 1
    port: int = 9094
    unlabelled_domains: tuple[str, ...] = field(default_factory=tuple)
    flwr_home: Path | None = None
    cache_dir: Path | None = None

    def home(self) -> Path:
        """Flower's state folder for this node."""
        return self.flwr_home or Path(os.environ.get("FLWR_HOME", Path.home() / ".flwr"))

    def caches(self) -> Path:
        """The folder of the site's caches."""
        return self.cache_dir or self.home() / "kizashi" / "cache"

    def node_config(self) -> dict:
        """What the ClientApp reads from the node (`fedcore.federation.task`)."""
        config: dict = {"site-dir": str(self.site_dir.resolve()), "threads": self.threads}
        if self.public_dir is not None:
            config["public-dir"] = str(self.public_dir.resolve())
        if self.unlabelled_domains:
            config["unlabelled-domains"] = ",".join(self.unlabelled_domains)
        return config

    def check(self) -> None:
        """Refuse options that cannot work or would connect unsafely by accident.

        Raises:
            JoinError: The problem, in one line.
        """
        host, _, port = self.superlink.rpartition(":")
        if not host or not port.isdigit():
            raise JoinError(f"the SuperLink must be given as host:port, got {self.superlink!r}")
        if self.insecure and self.root_certificates is not None:
            raise JoinError("--insecure and --root-certificates contradict each other")
        if not self.insecure and self.root_certificates is None:
            raise JoinError(
                "give the SuperLink's --root-certificates (PEM) to connect over TLS, "
                "or --insecure for plain HTTP on a test set-up"
            )
        for flag, path in (
            ("--root-certificates", self.root_certificates),
            ("--auth-key", self.auth_key),
            ("--trusted-entities", self.trusted_entities),
        ):
            if path is not None and not path.is_file():
                raise JoinError(f"{flag} {path}: no such file")
        try:
            site_threads({"threads": self.threads})
        except ValueError as error:
            raise JoinError(str(error)) from None
        if not 0 < self.port < 65536:
            raise JoinError(f"--port must be a TCP port, got {self.port}")


def read_joining_site(options: JoinOptions) -> SiteSummary:
    """Read the site folder as its ClientApp will, and say what it holds.

    Its samples are cut with the federation's default settings, so a file that
    training could not use fails here, before the node connects.

    Returns:
        The site's line of the ``kizashi city partitions`` table.

    Raises:
        CityDataError: A file of the site or the public layer breaks a rule (named).
        ValueError: The site names districts the public layer lacks, or unknown domains.
    """
    site_dir, public_dir = site_folders(options.node_config(), partitions_dir="")
    read_site_info(site_dir)  # a folder that is no site is named before the public layer
    city, info = load_site(site_dir, public_dir)
    site_samples(city, info, data_settings(FederationSettings()), options.unlabelled_domains)
    return summarize_sites(city, [info])[0]


def write_node_config(options: JoinOptions, folder: Path) -> Path:
    """The node config as a TOML file, which Flower reads whole (any path survives quoting).

    One file per runtime port, replaced atomically, so sites sharing a Flower
    home keep theirs apart and a rejoin leaves no stale copy.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"node-config-{options.port}.toml"
    # A JSON string is a TOML basic string, but TOML has no surrogate pairs: keep UTF-8.
    config = options.node_config().items()
    lines = [f"{key} = {json.dumps(value, ensure_ascii=False)}" for key, value in config]
    handle, staging = tempfile.mkstemp(prefix=path.name, dir=folder)
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    os.replace(staging, path)
    return path


def supernode_command(options: JoinOptions, node_config: Path) -> list[str]:
    """``flower-supernode`` with this site's connection, node config and safety flags."""
    beside = Path(sys.executable).parent / SUPERNODE
    program = str(beside) if beside.exists() else (shutil.which(SUPERNODE) or SUPERNODE)
    command = [program, "--superlink", options.superlink, "--node-config", str(node_config)]
    if options.insecure:
        command.append("--insecure")
    else:
        command += ["--root-certificates", str(options.root_certificates)]
    if options.auth_key is not None:
        command += ["--auth-supernode-private-key", str(options.auth_key)]
    if options.trusted_entities is not None:
        command += ["--trusted-entities", str(options.trusted_entities)]
    return command + ["--port", str(options.port)]


def join(
    options: JoinOptions,
    say: Callable[[str], None] = print,
    launch: Callable[[list[str], dict], None] | None = None,
) -> None:
    """Check the options and the site, then replace this process with the SuperNode.

    Args:
        options: How the site joins.
        say: Where the site's summary goes.
        launch: Runs the command with the environment; by default ``os.execvpe``,
            so the SuperNode gets this process's signals (Ctrl-C ends it).

    Raises:
        JoinError: An option is wrong or unsafe by accident.
        CityDataError: The site folder or public layer is broken (named file and rule).
    """
    options.check()
    with _environment(CACHE_DIR_VARIABLE, str(options.caches())):
        summary = read_joining_site(options)  # fills the embedding store for round 1
    rendered = Console(file=io.StringIO(), width=160, record=True)
    rendered.print(summary_table([summary]))
    say(rendered.export_text().rstrip())
    home = options.home()
    command = supernode_command(options, write_node_config(options, home / "kizashi"))
    env = {**os.environ, "FLWR_HOME": str(home), CACHE_DIR_VARIABLE: str(options.caches())}
    threads = f"{options.threads} thread{'' if options.threads == 1 else 's'}"
    say(f"joining {options.superlink} as {summary.site_id} ({threads})")
    (launch or (lambda argv, environ: os.execvpe(argv[0], argv, environ)))(command, env)


@contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    """Set one environment variable for a block, then put back what was there."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before

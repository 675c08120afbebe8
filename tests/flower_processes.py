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


def flower_home(folder: Path, name: str, port: int, ca: Path | None = None) -> dict[str, str]:
    """An environment whose ``flwr`` knows one SuperLink, ``name``, on 127.0.0.1:``port``.

    Over TLS checked against ``ca`` when given, else plain HTTP.
    """
    folder.mkdir(parents=True, exist_ok=True)
    security = f'root-certificates = "{ca}"' if ca else "insecure = true"
    (folder / "config.toml").write_text(
        f'[superlink]\ndefault = "{name}"\n\n'
        f'[superlink.{name}]\naddress = "127.0.0.1:{port}"\n{security}\n'
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
def running_superlink(
    folder: Path,
    name: str,
    simulation: bool,
    tls: dict[str, Path] | None = None,
    node_auth: bool = False,
) -> Iterator[tuple[dict, int]]:
    """A SuperLink on a free 127.0.0.1 port, never installing dependencies; ended on exit.

    Args:
        folder: Where its Flower home, state and log go.
        name: What ``flwr`` calls it.
        simulation: Flower's simulation runtime instead of deployment.
        tls: `tls_files` to serve HTTPS with; plain HTTP when None.
        node_auth: Admit only SuperNodes whose public key was registered
            (``flwr supernode register``).

    Yields:
        The environment for ``flwr`` (its FLWR_HOME knows the SuperLink as
        ``name``) and the port, on which the Control and Fleet APIs both listen.
    """
    port = free_port()
    env = flower_home(folder / "flwr-home", name, port, tls["ca"] if tls else None)
    command = [
        "flower-superlink",
        "--disable-runtime-dependency-installation",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]  # state in memory: with a SQLite file, concurrent pushes hit "database is locked"
    if tls:
        command += ["--ssl-ca-certfile", str(tls["ca"]), "--ssl-certfile", str(tls["certificate"])]
        command += ["--ssl-keyfile", str(tls["key"])]
    else:
        command.append("--insecure")
    if node_auth:
        command.append("--enable-supernode-auth")
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


def tls_files(folder: Path) -> dict[str, Path]:
    """A throwaway certificate authority and a certificate for 127.0.0.1 it signed.

    Returns:
        ``ca`` (the root certificate a site trusts), ``certificate`` and ``key``
        (the SuperLink's), as PEM files in ``folder``.
    """
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def signed(subject, public_key, issuer, issuer_key, extensions):
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = signed(
        name("kizashi test CA"),
        ca_key.public_key(),
        name("kizashi test CA"),
        ca_key,
        [(x509.BasicConstraints(ca=True, path_length=None), True)],
    )
    key = ec.generate_private_key(ec.SECP256R1())
    address = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    certificate = signed(
        name("127.0.0.1"),
        key.public_key(),
        ca.subject,
        ca_key,
        [(x509.BasicConstraints(ca=False, path_length=None), True), (address, False)],
    )
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "ca": folder / "ca.pem",
        "certificate": folder / "server.pem",
        "key": folder / "server.key",
    }
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["certificate"].write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


def node_key_pair(folder: Path, name: str) -> tuple[Path, Path]:
    """A SuperNode's EC key pair in OpenSSH format: ``(private, public)`` files."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP384R1())
    folder.mkdir(parents=True, exist_ok=True)
    private, public = folder / f"{name}.key", folder / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
    )
    return private, public

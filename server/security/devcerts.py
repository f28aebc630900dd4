"""Local development certificates: a throw-away CA, a server certificate for this machine and client
certificates whose DNS SAN and CN are client ids (`payments dev-certs DIR`, also used by the tests).

They are made with the `openssl` command (OpenSSL 1.1.1+/3.x or LibreSSL) so the service needs no extra
Python dependency for it. Keys are ECDSA P-256, written with mode 0600. Never use them in production:
anyone holding `ca.key` can mint a client certificate for any client id.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
DEFAULT_CLIENTS = ("client-a",)
# Dev client ids go into a DNS SAN and a file name: letters, digits, dots and hyphens.
_DEV_CLIENT_ID = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,61}[A-Za-z0-9])?$")
_HOST = re.compile(r"^[A-Za-z0-9*](?:[A-Za-z0-9.-]{0,252})$")


class DevCertError(RuntimeError):
    """The certificates could not be made; the message says why (never contains key material)."""


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class DevCertificates:
    directory: Path
    ca: CertPair
    server: CertPair
    clients: dict[str, CertPair] = field(default_factory=dict)


def _openssl() -> str:
    found = shutil.which("openssl")
    if found is None:
        raise DevCertError("making development certificates needs the `openssl` command on PATH")
    return found


def _run(*args: str) -> None:
    result = subprocess.run([_openssl(), *args], capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        # openssl's diagnostics name files and options; they never contain key material
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise DevCertError(f"openssl {args[0]} failed: {detail[-1] if detail else result.returncode}")


def _new_key(path: Path) -> None:
    """An ECDSA P-256 private key, in a file only its owner can read from the first byte on."""
    path.unlink(missing_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    _run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path))
    path.chmod(0o600)


def _config(directory: Path, common_name: str, extensions: list[str]) -> Path:
    text = "\n".join(
        ["[req]", "distinguished_name = dn", "prompt = no", "", "[dn]", f"CN = {common_name}", "", "[ext]", *extensions]
    )
    path = directory / f"{secrets.token_hex(4)}.cnf"
    path.write_text(text + "\n")
    return path


def _serial() -> str:
    return "0x" + secrets.token_hex(16)


def _san(hosts: Sequence[str]) -> str:
    names = []
    for host in hosts:
        try:
            names.append(f"IP:{ipaddress.ip_address(host)}")
        except ValueError:
            names.append(f"DNS:{host}")
    return "subjectAltName = " + ",".join(names)


def _issue(work: Path, ca: CertPair, pair: CertPair, common_name: str, extensions: list[str], days: int) -> None:
    _new_key(pair.key)
    config = _config(work, common_name, extensions)
    csr = work / f"{secrets.token_hex(4)}.csr"
    _run("req", "-new", "-key", str(pair.key), "-out", str(csr), "-config", str(config))
    _run(
        "x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key), "-set_serial", _serial(),
        "-days", str(days), "-sha256", "-out", str(pair.cert), "-extfile", str(config), "-extensions", "ext",
    )  # fmt: skip


def generate_dev_certs(
    directory: Path,
    *,
    client_ids: Sequence[str] = DEFAULT_CLIENTS,
    hosts: Sequence[str] = DEFAULT_HOSTS,
    days: int = 30,
    overwrite: bool = False,
    ca_name: str = "payments development CA",
) -> DevCertificates:
    """Writes ca.pem/ca.key, server.pem/server.key (SANs: `hosts`) and clients/<id>.pem/.key per client id."""
    for client_id in client_ids:
        if not _DEV_CLIENT_ID.match(client_id):
            raise DevCertError(f"client id {client_id!r}: use letters, digits, dots and hyphens (it is a DNS SAN)")
    for host in hosts:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if not _HOST.match(host):
                raise DevCertError(f"{host!r} is not a host name or IP address") from None
    if not hosts:
        raise DevCertError("the server certificate needs at least one host name or IP address")
    if days < 1:
        raise DevCertError("--days must be at least 1")
    clients = directory / "clients"
    clients.mkdir(parents=True, exist_ok=True)
    result = DevCertificates(
        directory=directory,
        ca=CertPair(directory / "ca.pem", directory / "ca.key"),
        server=CertPair(directory / "server.pem", directory / "server.key"),
        clients={c: CertPair(clients / f"{c}.pem", clients / f"{c}.key") for c in client_ids},
    )
    pairs = [result.ca, result.server, *result.clients.values()]
    existing = [p for pair in pairs for p in (pair.cert, pair.key) if p.exists()]
    if existing and not overwrite:
        raise DevCertError(f"{existing[0]} exists; pass --force to replace the certificates in {directory}")
    with tempfile.TemporaryDirectory(prefix="payments-dev-certs-") as scratch:
        work = Path(scratch)
        _new_key(result.ca.key)
        ca_config = _config(work, ca_name, [
            "basicConstraints = critical, CA:TRUE, pathlen:0",
            "keyUsage = critical, keyCertSign, cRLSign",
            "subjectKeyIdentifier = hash",
        ])  # fmt: skip
        _run(
            "req", "-x509", "-new", "-key", str(result.ca.key), "-out", str(result.ca.cert), "-days", str(days),
            "-sha256", "-set_serial", _serial(), "-config", str(ca_config), "-extensions", "ext",
        )  # fmt: skip
        leaf = [
            "basicConstraints = critical, CA:FALSE",
            "keyUsage = critical, digitalSignature",
            "subjectKeyIdentifier = hash",
            "authorityKeyIdentifier = keyid",
        ]
        _issue(work, result.ca, result.server, hosts[0], [*leaf, "extendedKeyUsage = serverAuth", _san(hosts)], days)
        for client_id, pair in result.clients.items():
            extensions = [*leaf, "extendedKeyUsage = clientAuth", f"subjectAltName = DNS:{client_id}"]
            _issue(work, result.ca, pair, client_id, extensions, days)
    return result

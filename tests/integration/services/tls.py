"""Certificates for the TLS-speaking services: a throw-away CA per call and server
certificates it signs, made with the ``openssl`` command line.

The ``cryptography`` package is not in the locks, and the openssl CLI is on every machine
that has PostgreSQL or Redis installed; four commands per certificate do not justify a
new dependency. Keys are EC P-256 in PKCS#8 PEM, which PostgreSQL, Redis, Kafka's PEM
key store and Python's ssl module all read unencrypted.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
from collections.abc import Sequence
from pathlib import Path

from tests.integration.services.process import LOOPBACK, _require, _run_checked

# Long enough for any test run, short enough that a leaked key is worthless soon.
VALID_DAYS = 2


@dataclasses.dataclass(frozen=True)
class ServerCertificate:
    cert: Path
    key: Path
    hosts: tuple[str, ...]

    @property
    def key_and_chain(self) -> Path:
        """Key then certificate in one file (what Kafka's PEM key store reads)."""
        combined = self.cert.with_suffix(".pem")
        if not combined.exists():
            combined.write_text(
                self.key.read_text(encoding="ascii") + self.cert.read_text(encoding="ascii"),
                encoding="ascii",
            )
            combined.chmod(0o600)
        return combined

    def give_to(self, user: str, directory: Path) -> ServerCertificate:
        """Copies in ``directory`` readable by ``user`` only (PostgreSQL refuses a key
        others can read, and, run as root, it runs as the postgres user, which cannot
        enter pytest's private temp dirs)."""
        entry = pwd.getpwnam(user)
        directory.mkdir(exist_ok=True)
        os.chown(directory, entry.pw_uid, entry.pw_gid)
        copies = []
        for source in (self.cert, self.key):
            target = directory / source.name
            target.write_bytes(source.read_bytes())
            target.chmod(0o600)
            os.chown(target, entry.pw_uid, entry.pw_gid)
            copies.append(target)
        return ServerCertificate(cert=copies[0], key=copies[1], hosts=self.hosts)


@dataclasses.dataclass(frozen=True)
class CertificateAuthority:
    name: str
    cert: Path
    key: Path
    workdir: Path

    def issue(self, name: str, hosts: Sequence[str] = (LOOPBACK, "localhost")) -> ServerCertificate:
        """A server certificate for ``hosts`` (IP addresses and DNS names, as
        subjectAltName: that is what verify-full and check_hostname compare)."""
        openssl = _require("openssl")
        key = self.workdir / f"{name}.key"
        csr = self.workdir / f"{name}.csr"
        cert = self.workdir / f"{name}.crt"
        ext = self.workdir / f"{name}.ext"
        alt_names = ",".join(
            f"IP:{h}" if h.replace(".", "").isdigit() or ":" in h else f"DNS:{h}" for h in hosts
        )
        ext.write_text(
            f"subjectAltName={alt_names}\n"
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n",
            encoding="ascii",
        )
        _run_checked(
            [
                openssl,
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                str(key),
                "-out",
                str(csr),
                "-subj",
                f"/CN={hosts[0]}",
            ],
            f"openssl req for {name}",
        )
        key.chmod(0o600)
        _run_checked(
            [
                openssl,
                "x509",
                "-req",
                "-in",
                str(csr),
                "-CA",
                str(self.cert),
                "-CAkey",
                str(self.key),
                "-CAcreateserial",
                "-days",
                str(VALID_DAYS),
                "-sha256",
                "-extfile",
                str(ext),
                "-out",
                str(cert),
            ],
            f"openssl x509 signing {name}",
        )
        return ServerCertificate(cert=cert, key=key, hosts=tuple(hosts))


def make_ca(workdir: Path, name: str = "saga-test-ca") -> CertificateAuthority:
    """A new self-signed CA in ``workdir`` (its key never leaves that directory)."""
    openssl = _require("openssl")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    key = workdir / "ca.key"
    cert = workdir / "ca.crt"
    _run_checked(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            str(VALID_DAYS),
            "-sha256",
            "-subj",
            f"/CN={name}",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        f"openssl req for CA {name}",
    )
    key.chmod(0o600)
    # The CA certificate is public: a PostgreSQL run as another user reads it too.
    cert.chmod(0o644)
    workdir.chmod(0o755)
    return CertificateAuthority(name=name, cert=cert, key=key, workdir=workdir)

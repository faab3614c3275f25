"""HTTPS for the local session pool: a private CA and a loopback server certificate, made once per data folder.

``aca-sessions emulator --tls`` keeps, under ``<data-dir>/tls/`` (mode 0700, keys 0600):

* ``ca.pem`` — the CA certificate: the bundle clients trust (``SSL_CERT_FILE``, ``verify=``). Its name
  constraints let it sign certificates for ``localhost``, 127.0.0.0/8 and ::1 only, so trusting it can never
  vouch for another host, whoever gets hold of its key;
* ``ca-key.pem`` — its private key, used only to issue the server certificate;
* ``server.pem``, ``server-key.pem`` — the certificate the pool serves (``localhost``, ``127.0.0.1``, ``::1``).

The CA lives ten years and is reused across restarts, so a trust set up once keeps working; the server
certificate (about 13 months, the browsers' limit) is issued again from the same CA when it nears its end or
when any file is missing. ``cryptography`` is imported only here, only when TLS is asked for.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import ssl
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["TLSFiles", "ensure_certificates", "server_context"]

logger = logging.getLogger("aca_kernel.emulator")

CA_DAYS = 3650
SERVER_DAYS = 397
RENEW_BEFORE = dt.timedelta(days=30)
SERVER_NAMES = ("localhost",)
SERVER_IPS = ("127.0.0.1", "::1")
_PERMITTED_NETWORKS = ("127.0.0.0/8", "::1/128")


@dataclass(frozen=True)
class TLSFiles:
    certfile: Path
    keyfile: Path
    ca_bundle: Path | None  # None for a certificate the user brought (--certfile)


def server_context(certfile: str | os.PathLike[str], keyfile: str | os.PathLike[str] | None) -> ssl.SSLContext:
    """Load the pair as the server will; a clear ValueError when it cannot be used."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(os.fspath(certfile), os.fspath(keyfile) if keyfile is not None else None)
    except FileNotFoundError as exc:
        raise ValueError(f"cannot read {exc.filename or certfile}: no such file") from exc
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
        what = f"{certfile}" + (f" and {keyfile}" if keyfile is not None else "")
        raise ValueError(f"cannot use {what} as a certificate and private key ({reason}); give PEM files, "
                         "the key unencrypted") from exc
    return context


def _write_private(path: Path, data: bytes) -> None:
    """Write atomically with mode 0600 (a key is never readable by others, not even for a moment)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _new_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _make_ca(directory: Path) -> tuple[Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    key = _new_key()
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "aca-sessions local pool"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"aca-sessions local CA {uuid.uuid4().hex[:8]}"),
    ])
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.NameConstraints(
            permitted_subtrees=[x509.DNSName("localhost"),
                                *(x509.IPAddress(ipaddress.ip_network(n)) for n in _PERMITTED_NETWORKS)],
            excluded_subtrees=None), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(directory / "ca-key.pem", _pem_key(key))
    _write_private(directory / "ca.pem", cert.public_bytes(serialization.Encoding.PEM))
    logger.info("created a local CA for HTTPS in %s", directory)
    return cert, key


def _make_server(directory: Path, ca_cert: Any, ca_key: Any) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = _new_key()
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName([
            *(x509.DNSName(n) for n in SERVER_NAMES),
            *(x509.IPAddress(ipaddress.ip_address(a)) for a in SERVER_IPS)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(directory / "server-key.pem", _pem_key(key))
    _write_private(directory / "server.pem", cert.public_bytes(serialization.Encoding.PEM))
    logger.info("issued the local pool's server certificate (valid until %s)", cert.not_valid_after_utc.date())


def _load_ca(directory: Path) -> tuple[Any, Any] | None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        cert = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
        key = serialization.load_pem_private_key((directory / "ca-key.pem").read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    if cert.not_valid_after_utc - RENEW_BEFORE < _now():
        return None
    return cert, key


def _server_usable(directory: Path, ca_cert: Any) -> bool:
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate((directory / "server.pem").read_bytes())
        (directory / "server-key.pem").stat()
    except (OSError, ValueError):
        return False
    return cert.issuer == ca_cert.subject and cert.not_valid_after_utc - RENEW_BEFORE > _now()


def ensure_certificates(directory: Path) -> TLSFiles:
    """The pool's CA and server certificate in ``directory``, created or renewed as needed."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    loaded = _load_ca(directory)
    if loaded is None:
        loaded = _make_ca(directory)
        _make_server(directory, *loaded)
    elif not _server_usable(directory, loaded[0]):
        _make_server(directory, *loaded)
    return TLSFiles(certfile=directory / "server.pem", keyfile=directory / "server-key.pem",
                    ca_bundle=directory / "ca.pem")

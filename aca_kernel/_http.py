"""How the sync and async clients build their httpx client: connection reuse and TLS set-up, done once.

Kept apart from ``_base`` (which does no I/O and imports no httpx) so both clients share it.
"""

from __future__ import annotations

import functools
import os
import ssl
from typing import Any

import httpx

__all__ = ["KEEPALIVE_EXPIRY", "client_options", "detached"]

# An interactive notebook sends a cell every few seconds to minutes. httpx drops an idle connection after 5 s by
# default, so nearly every cell paid a new connection (a TLS handshake on Azure). Azure's load balancers keep
# idle TCP connections for 4 minutes; closing ours a little earlier means the server never closes one under a
# request. The local pool keeps them longer still (emulator/cli.py).
KEEPALIVE_EXPIRY = 200.0


@functools.lru_cache(maxsize=4)
def _ssl_context(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    # Loading the CA bundle costs ~20 ms: once per process (per SSL_CERT_FILE/SSL_CERT_DIR), not per client.
    return httpx.create_ssl_context(trust_env=True)


def client_options(endpoint: str, verify: bool | ssl.SSLContext = True) -> dict[str, Any]:
    """Keyword arguments for ``httpx.Client``/``AsyncClient`` talking to ``endpoint``.

    ``verify`` as the client was given it (``_base.ssl_verify``): True means the system's trust store.
    """
    if endpoint.lower().startswith("http://"):
        verify = False  # plain http:// has no TLS to verify, and skipping it skips loading the CA bundle
    elif verify is True:
        verify = _ssl_context(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    return {"verify": verify, "limits": httpx.Limits(max_keepalive_connections=8, keepalive_expiry=KEEPALIVE_EXPIRY)}


_READ = httpx.ByteStream(b"")


def detached(response: httpx.Response) -> httpx.Response:
    """``response`` (already read) without its stream, which refers back to it.

    httpx's response and its stream form a reference cycle, so a response body (a cell's envelope may hold
    megabytes of images) stayed in memory until the cycle collector ran, which in a long-lived kernel is rarely.
    The content is read and kept; nothing needs the stream any more.
    """
    response.stream = _READ
    return response

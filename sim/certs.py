"""sim/certs.py: the simulator's TLS certificate (`python -m sim --tls`).

A throw-away test CA and a server certificate for the loopback names, made at start-up by
trustme (a small, well-kept library for exactly this, built on `cryptography`), so no key
or certificate is ever stored in the repository. The CA certificate (public; no key) is
written as PEM to a file the engine and the tests point at (`--ca-out PATH`, or a
temporary file the simulator removes when it exits; its path is printed in the start line
as `ca=PATH`). The server's private key lives only in this process.

KuCoin is reached only over TLS (docs/kucoin.md 2.1, 2.2: https REST, and the bullet
answers announce wss:// endpoints with "encrypt": true); with --tls the simulator serves
REST and the WebSocket the same way, on one port.
"""
from __future__ import annotations

import os
import ssl
import tempfile

DEFAULT_NAMES = ("127.0.0.1", "localhost", "::1")


class ServerTls:
    """The server SSLContext and where the CA certificate was written."""

    def __init__(self, names=DEFAULT_NAMES, ca_out: str = ""):
        import trustme   # only the simulator's --tls needs it

        self.ca = trustme.CA()
        # ECDSA P-256 keys (trustme's default): what most exchanges' fronts serve today, and
        # a cheap handshake for the many reconnects the fault tests make
        self.cert = self.ca.issue_cert(*names)
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.cert.configure_cert(self.context)
        self.temp = not ca_out
        if ca_out:
            self.ca_path = os.path.abspath(ca_out)
            self.ca.cert_pem.write_to_path(self.ca_path)
        else:
            fd, self.ca_path = tempfile.mkstemp(prefix="sim-ca-", suffix=".pem")
            os.close(fd)
            self.ca.cert_pem.write_to_path(self.ca_path)

    def cleanup(self) -> None:
        if self.temp:
            try:
                os.unlink(self.ca_path)
            except OSError:
                pass

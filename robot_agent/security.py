"""The agent's side of transport security: TLS to the server, a client certificate, a bearer token.

:class:`ChannelSecurity` holds where the material is (``[server]`` ``tls``, ``tls_ca``,
``tls_cert``, ``tls_key``, ``tls_server_name``, ``token_file``; the token itself may come from the
``VLA_TOKEN`` environment variable, read by ``cli.py``). Files are read on each connect
(:meth:`ChannelSecurity.load`, blocking: call it off the event loop), so a renewed certificate or
token is picked up at the next reconnect.

:func:`security_error` reads a failed first call and names what failed, as
:class:`TransportSecurityError` (fatal: retrying would not fix it): an expired certificate, a host
name the certificate does not list, a certificate no configured CA signed, a client certificate the
server wants or refused, a token it refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from robot_agent.errors import ConfigError, TransportSecurityError
from vla.pem import read_pem

if TYPE_CHECKING:
    from robot_agent.config import ServerConfig

__all__ = ["ChannelSecurity", "LoadedSecurity", "security_error"]


@dataclass(frozen=True)
class LoadedSecurity:
    """What :meth:`ChannelSecurity.load` read: the channel credentials (``None``: plaintext), the
    channel options (the server name override) and the call metadata (the bearer token)."""

    credentials: grpc.ChannelCredentials | None
    options: tuple[tuple[str, str], ...]
    metadata: tuple[tuple[str, str], ...] = field(repr=False)


@dataclass(frozen=True)
class ChannelSecurity:
    """TLS and token settings of the agent's channel; all off is plaintext with no token.

    ``tls`` turns TLS on with the system's CAs; ``tls_ca`` (a PEM file) turns it on with that CA
    only. ``tls_cert``/``tls_key`` present a client certificate (mTLS). ``tls_server_name``
    checks the server's certificate against that name instead of the address's host. ``token``
    (never in ``repr``) or else ``token_file`` (first non-comment line) is sent as
    ``authorization: Bearer <token>`` on every call.
    """

    tls: bool = False
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_server_name: str | None = None
    token_file: Path | None = None
    token: str | None = field(default=None, repr=False)

    @classmethod
    def from_config(cls, server: ServerConfig) -> ChannelSecurity:
        """The settings of the ``[server]`` section."""
        return cls(
            tls=server.tls or server.tls_ca is not None,
            tls_ca=Path(server.tls_ca) if server.tls_ca else None,
            tls_cert=Path(server.tls_cert) if server.tls_cert else None,
            tls_key=Path(server.tls_key) if server.tls_key else None,
            tls_server_name=server.tls_server_name,
            token_file=Path(server.token_file) if server.token_file else None,
            token=server.token,
        )

    @property
    def has_token(self) -> bool:
        return bool(self.token) or self.token_file is not None

    def load(self) -> LoadedSecurity:
        """Read the files. Raises :class:`ConfigError` naming ``server.<field>`` and the path of
        one that cannot be read, is not PEM, or (token file) holds no token. Blocking."""
        credentials = None
        if self.tls:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=read_pem(self.tls_ca, "server.tls_ca", b"CERTIFICATE", ConfigError)
                if self.tls_ca
                else None,
                private_key=read_pem(self.tls_key, "server.tls_key", b"PRIVATE KEY", ConfigError)
                if self.tls_key
                else None,
                certificate_chain=read_pem(self.tls_cert, "server.tls_cert", b"CERTIFICATE", ConfigError)
                if self.tls_cert
                else None,
            )
        options = (("grpc.ssl_target_name_override", self.tls_server_name),) if self.tls_server_name else ()
        token = self.token or (_read_token(self.token_file) if self.token_file is not None else None)
        metadata = (("authorization", f"Bearer {token}"),) if token else ()
        return LoadedSecurity(credentials, options, metadata)


def _read_token(path: Path) -> str:
    where = "server.token_file"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where} {path}: cannot read it ({type(exc).__name__})", field=where) from None
    for line in lines:
        token = line.strip()
        if token and not token.startswith("#"):
            if any(c.isspace() for c in token) or not token.isprintable():
                raise ConfigError(
                    f"{where} {path}: the token has spaces or unprintable characters", field=where
                )
            return token
    raise ConfigError(f"{where} {path}: holds no token", field=where)


def security_error(
    exc: grpc.aio.AioRpcError, address: str, security: ChannelSecurity
) -> TransportSecurityError | None:
    """The certificate or token problem behind ``exc`` (the first call's failure), or ``None``
    when it is not one (nothing listening, no answer: the caller retries those).

    gRPC core reports a failed handshake in the call's details ("certificate has expired",
    "Hostname Verification Check failed", "unable to get local issuer certificate"); a server
    that requires a client certificate closes the socket in the handshake ("Socket closed", seen
    only under TLS); a refused token is ``UNAUTHENTICATED`` from the server's interceptor.
    """
    details = exc.details() or ""
    code = exc.code()

    def fail(reason: str, message: str) -> TransportSecurityError:
        return TransportSecurityError(f"{address}: {message}; not retrying", address=address, reason=reason)

    ca = f"server.tls_ca {security.tls_ca}" if security.tls_ca else "the system's CAs"
    if security.tls:
        if "certificate has expired" in details or "CERTIFICATE_EXPIRED" in details:
            return fail("expired", "the server's TLS certificate (or its CA) has expired: renew it")
        if "not yet valid" in details or "CERTIFICATE_NOT_YET_VALID" in details:
            return fail("not_yet_valid", "the server's TLS certificate is not valid yet: check both clocks")
        if "Hostname Verification" in details or "No match found for server name" in details:
            host = security.tls_server_name or address.rpartition(":")[0].strip("[]")
            return fail(
                "host_name",
                f"the server's TLS certificate is not valid for host name {host!r} "
                "(wrong host name; set server.tls_server_name to a name it lists)",
            )
        if any(m in details for m in _UNKNOWN_CA):
            return fail("unknown_ca", f"the server's TLS certificate is signed by an unknown CA (not {ca})")
        if "Socket closed" in details and "failed to connect" in details:
            which = "refused our client certificate" if security.tls_cert else "wants a client certificate"
            return fail(
                "client_certificate",
                f"the server closed the TLS handshake: it {which} (mTLS: set server.tls_cert and "
                "server.tls_key to a certificate its CA signed)",
            )
        if "handshake" in details.lower() or "SSL_ERROR" in details or "WRONG_VERSION_NUMBER" in details:
            last = details.rsplit("last error: ", 1)[-1]
            return fail("tls", f"TLS handshake failed (a plaintext server?): {last[:200]}")
    if code == grpc.StatusCode.UNAUTHENTICATED and "failed to connect" not in details:
        if security.has_token:
            return fail(
                "token",
                "the server refused the token (UNAUTHENTICATED): check server.token_file or VLA_TOKEN",
            )
        return fail(
            "token", "the server requires a token (UNAUTHENTICATED): set server.token_file or VLA_TOKEN"
        )
    return None


_UNKNOWN_CA = (
    "unable to get local issuer certificate",
    "self signed certificate",
    "self-signed certificate",
    "certificate signature failure",
    "CERTIFICATE_VERIFY_FAILED",
)

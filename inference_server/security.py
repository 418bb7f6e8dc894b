"""Transport security for the gRPC port: TLS, optional client certificates (mTLS), bearer tokens.

- TLS: ``tls_cert`` + ``tls_key`` (PEM) make the port a TLS port; ``tls_client_ca`` also asks
  every client for a certificate signed by that CA, and a client without one is refused in the
  handshake, before any RPC.
- Tokens: with a token file (one token a line, ``#`` comments) every RPC must carry
  ``authorization: Bearer <token>`` metadata. :class:`TokenInterceptor` compares it in constant
  time (:func:`hmac.compare_digest`) against each known token and answers a missing or wrong one
  with ``UNAUTHENTICATED`` and the same fixed detail, so the answer helps no guessing. Tokens are
  never logged; only the file's path and the count are.
- The health service (``grpc.health.v1.Health``) is exempt from the token check, so an
  orchestrator's probe needs no secret; it shares the port, and so TLS and mTLS, with the rest.

:func:`make_certs` writes a throwaway CA, a server certificate and a client certificate for a lab
(``python -m inference_server make-certs DIR --host gpu-box``); it needs the ``cryptography``
package (``pip install 'vla-deploy[server]'``).
"""

from __future__ import annotations

import datetime as dt
import hmac
import ipaddress
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from inference_server.errors import ConfigError
from vla.pem import read_pem

if TYPE_CHECKING:  # cryptography is imported when make_certs runs (the server extra)
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

__all__ = [
    "EXEMPT_SERVICES",
    "UNAUTHENTICATED_DETAIL",
    "TokenInterceptor",
    "make_certs",
    "parse_tokens",
    "read_tokens",
    "server_credentials",
]

logger = logging.getLogger(__name__)

# Reachable without a token: an orchestrator's liveness/readiness probe carries no secret.
EXEMPT_SERVICES = ("grpc.health.v1.Health",)
# The one detail every refused call gets: it says neither whether a token was sent nor how close it was.
UNAUTHENTICATED_DETAIL = "missing or invalid bearer token"
_MAX_TOKENS = 1024


def read_tokens(path: Path) -> tuple[bytes, ...]:
    """The tokens in ``path``: one a line, blank lines and ``#`` comments skipped.

    Raises :class:`ConfigError` (``field="token_file"``) for a file that cannot be read, holds no
    token, or holds a token shorter than 16 characters (guessable) or with spaces.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"token_file {path}: cannot read it ({type(exc).__name__})", field="token_file"
        ) from None
    return parse_tokens(text.splitlines(), f"token_file {path}", "token_file")


def parse_tokens(lines: Sequence[str], where: str, field: str) -> tuple[bytes, ...]:
    """The tokens of ``lines`` (a token file's lines, or ``$VLA_TOKENS`` split on whitespace):
    blank ones and ``#`` comments skipped. ``where`` starts each error message.

    Raises :class:`ConfigError` (``field``) when there is no token, more than 1024, or one shorter
    than 16 characters (guessable), with spaces or unprintable; the token itself is never echoed.
    """
    tokens = []
    for number, line in enumerate(lines, 1):
        token = line.strip()
        if not token or token.startswith("#"):
            continue
        if len(token) < 16 or any(c.isspace() for c in token) or not token.isprintable():
            raise ConfigError(
                f"{where}: line {number} is not a usable token (16+ printable characters, no spaces)",
                field=field,
            )
        tokens.append(token.encode())
    if not tokens:
        raise ConfigError(f"{where}: holds no token", field=field)
    if len(tokens) > _MAX_TOKENS:
        raise ConfigError(f"{where}: {len(tokens)} tokens, at most {_MAX_TOKENS}", field=field)
    return tuple(tokens)


def server_credentials(cert: Path, key: Path, client_ca: Path | None = None) -> grpc.ServerCredentials:
    """gRPC server credentials from PEM files; with ``client_ca``, clients must present a
    certificate that CA signed (mTLS: refused at the handshake otherwise).

    Raises :class:`ConfigError` naming the field (``tls_cert``, ``tls_key``, ``tls_client_ca``) of a
    file that cannot be read or is not PEM.
    """
    cert_pem = read_pem(cert, "tls_cert", b"CERTIFICATE", ConfigError)
    key_pem = read_pem(key, "tls_key", b"PRIVATE KEY", ConfigError)
    ca_pem = (
        read_pem(client_ca, "tls_client_ca", b"CERTIFICATE", ConfigError) if client_ca is not None else None
    )
    return grpc.ssl_server_credentials(
        [(key_pem, cert_pem)], root_certificates=ca_pem, require_client_auth=ca_pem is not None
    )


def _bearer(metadata: Sequence[tuple[str, Any]] | None) -> bytes | None:
    for key, value in metadata or ():
        if key == "authorization":
            raw = value if isinstance(value, bytes) else str(value).encode()
            scheme, _, token = raw.partition(b" ")
            return token.strip() if scheme.lower() == b"bearer" else None
    return None


@dataclass(frozen=True)
class _Deny:
    """What a refused call runs instead of its handler: UNAUTHENTICATED, the fixed detail."""

    async def unary(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_DETAIL)

    async def stream(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_DETAIL)


class TokenInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc ships no stubs
    """Refuses every RPC (but the health service's) whose ``authorization`` metadata is not
    ``Bearer <one of tokens>``, with ``UNAUTHENTICATED`` and :data:`UNAUTHENTICATED_DETAIL`.

    Every known token is compared, in constant time each (:func:`hmac.compare_digest`), so the
    time taken tells nothing of which token came closest. ``on_refused`` (a metrics counter's
    ``inc``, say) is called once per refused call. The token is never logged.
    """

    def __init__(self, tokens: Sequence[bytes], *, on_refused: Callable[[], None] | None = None) -> None:
        if not tokens:
            raise ValueError("TokenInterceptor needs at least one token")
        self._tokens = tuple(tokens)
        self._on_refused = on_refused
        deny = _Deny()
        self._deny = {
            (False, False): grpc.unary_unary_rpc_method_handler(deny.unary),
            (False, True): grpc.unary_stream_rpc_method_handler(deny.unary),
            (True, False): grpc.stream_unary_rpc_method_handler(deny.stream),
            (True, True): grpc.stream_stream_rpc_method_handler(deny.stream),
        }

    def allows(self, token: bytes | None) -> bool:
        """Whether ``token`` is one of the known tokens (constant time per token)."""
        ok = False
        for known in self._tokens:
            ok |= hmac.compare_digest(known, token if token is not None else b"")
        return ok and token is not None

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method or ""
        if method.lstrip("/").split("/", 1)[0] in EXEMPT_SERVICES:
            return await continuation(handler_call_details)
        if self.allows(_bearer(handler_call_details.invocation_metadata)):
            return await continuation(handler_call_details)
        if self._on_refused is not None:
            self._on_refused()
        logger.debug("Refused %s: missing or invalid bearer token", method)
        handler = await continuation(handler_call_details)
        if handler is None:  # an unknown method: refuse it the same way, unary
            return self._deny[(False, False)]
        return self._deny[(handler.request_streaming, handler.response_streaming)]


def _ca_usage() -> x509.KeyUsage:
    from cryptography import x509

    flags = dict.fromkeys(
        ("content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
         "encipher_only", "decipher_only"),
        False,
    )  # fmt: skip
    return x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, **flags)


def make_certs(
    directory: Path,
    hosts: Sequence[str],
    *,
    days: int = 30,
    client_name: str = "robot-agent",
    now: dt.datetime | None = None,
) -> dict[str, Path]:
    """Write a throwaway lab CA and two certificates signed by it into ``directory``.

    Files: ``ca.pem``/``ca.key`` (the CA), ``server.pem``/``server.key`` (valid for every name or IP
    in ``hosts``: the subject alternative names a client checks), ``client.pem``/``client.key``
    (for mTLS; common name ``client_name``). EC P-256 keys, SHA-256 signatures, valid ``days`` from
    ``now`` (UTC; a test passes a past ``now`` to get an expired certificate). Keys are written
    mode 0600. Returns the paths by name (``"ca"``, ``"server_cert"``, ...).

    Raises :class:`ConfigError` when ``cryptography`` is not installed (with the pip line) or
    ``hosts`` is empty.
    """
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:
        raise ConfigError(
            "make-certs needs the cryptography package: pip install 'vla-deploy[server]'"
        ) from None
    if not hosts:
        raise ConfigError("make-certs needs at least one --host", field="host")
    now = now or dt.datetime.now(dt.UTC)
    start, end = now - dt.timedelta(minutes=5), now + dt.timedelta(days=days)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    def key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def builder(
        subject: str, public: ec.EllipticCurvePublicKey, issuer: x509.Name
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(issuer)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
        )

    ca_key = key()
    ca_common = f"vla-deploy lab CA {secrets.token_hex(4)}"  # unique: two labs' CAs never look alike
    ca_name = name(ca_common)
    ca_cert = (
        builder(ca_common, ca_key.public_key(), ca_name)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(
        common: str, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName] | None
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        leaf_key = key()
        b = builder(common, leaf_key.public_key(), ca_name)
        b = b.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return leaf_key, b.sign(ca_key, hashes.SHA256())

    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    server_key, server_cert = leaf(hosts[0], ExtendedKeyUsageOID.SERVER_AUTH, sans)
    client_key, client_cert = leaf(client_name, ExtendedKeyUsageOID.CLIENT_AUTH, None)

    def write_cert(path: Path, cert: x509.Certificate) -> Path:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    def write_key(path: Path, private: ec.EllipticCurvePrivateKey) -> Path:
        data = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        path.touch(mode=0o600, exist_ok=True)
        path.chmod(0o600)
        path.write_bytes(data)
        return path

    return {
        "ca": write_cert(directory / "ca.pem", ca_cert),
        "ca_key": write_key(directory / "ca.key", ca_key),
        "server_cert": write_cert(directory / "server.pem", server_cert),
        "server_key": write_key(directory / "server.key", server_key),
        "client_cert": write_cert(directory / "client.pem", client_cert),
        "client_key": write_key(directory / "client.key", client_key),
    }

"""TLS, mTLS and bearer tokens on loopback: what connects, and the one line the agent gives when
it cannot (expired certificate, wrong host name, unknown CA, client certificate, token)."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from inference_server import ServerConfig
from inference_server.security import UNAUTHENTICATED_DETAIL
from inference_server.server import Server
from robot_agent.cameras.base import Frame
from robot_agent.errors import NotAPolicyServer, ServerUnavailable, TransportSecurityError
from robot_agent.policy_client import PolicyClient
from robot_agent.security import ChannelSecurity
from tests.security.conftest import TOKEN
from tests.utils import poll_until, run_server


def _config(bundle: Path, **security: Path | bool) -> ServerConfig:
    return ServerConfig(policy=bundle, metrics_port=None, warmup_iters=0, **security)  # type: ignore[arg-type]


def _tls(certs: dict[str, Path], *, client_ca: bool = False) -> dict[str, Path]:
    out = {"tls_cert": certs["server_cert"], "tls_key": certs["server_key"]}
    return {**out, "tls_client_ca": certs["ca"]} if client_ca else out


@asynccontextmanager
async def _client(
    server: Server, security: ChannelSecurity, host: str = "localhost"
) -> AsyncIterator[PolicyClient]:
    """A client of ``server``; on exit closed, and the server seen to end its stream (if any)."""
    client = PolicyClient(f"{host}:{server.port}", security=security, connect_timeout_s=5.0)
    try:
        yield client
    finally:
        await client.close()
        await poll_until(lambda: server.registry.get_sample_value("vla_server_sessions") == 0)
        for _ in range(3):
            await asyncio.sleep(0)
        gc.collect()


async def _serves(client: PolicyClient) -> str:
    """Connect, then one request and its answer on the Predict stream; the policy's name."""
    spec = await client.connect()
    request = client.build_request(
        {"front": Frame(rgb=np.zeros((64, 64, 3), np.uint8), time_s=0.0)}, np.zeros(8, np.float32), "go", 0.0
    )
    client.stamp(request)
    await client.send(request)
    chunk = await client.receive()
    assert (chunk.status, chunk.problem) == ("OK", None), chunk.message
    return spec.name


async def _refusal(
    server: Server, security: ChannelSecurity, host: str = "localhost"
) -> TransportSecurityError:
    async with _client(server, security, host) as client:
        with pytest.raises(TransportSecurityError) as info:
            await client.connect()
    error = info.value
    assert "\n" not in str(error)  # one line
    assert isinstance(error, NotAPolicyServer)  # fatal: the agent does not retry it as "server down"
    assert not isinstance(error, ServerUnavailable)
    return error


# -- TLS ------------------------------------------------------------------------------------------


async def test_tls_connects_with_the_lab_ca(echo_bundle: Path, certs: dict[str, Path]) -> None:
    async with (
        run_server(_config(echo_bundle, **_tls(certs))) as server,
        _client(server, ChannelSecurity(tls=True, tls_ca=certs["ca"])) as client,
    ):
        assert await _serves(client) == "test-policy"


async def test_a_plaintext_agent_is_not_served_by_a_tls_port(
    echo_bundle: Path, certs: dict[str, Path]
) -> None:
    async with (
        run_server(_config(echo_bundle, **_tls(certs))) as server,
        _client(server, ChannelSecurity()) as client,
    ):
        with pytest.raises(ServerUnavailable) as info:  # retried: it may also be a server going down
            await client.connect()
    assert str(info.value).endswith("(closed at once: a TLS port? then set server.tls_ca)")
    assert "\n" not in str(info.value)


async def test_a_tls_agent_names_a_plaintext_server(echo_bundle: Path, certs: dict[str, Path]) -> None:
    async with run_server(_config(echo_bundle)) as server:
        error = await _refusal(server, ChannelSecurity(tls=True, tls_ca=certs["ca"]))
    assert error.reason == "tls"
    assert "TLS handshake failed (a plaintext server?)" in str(error)


async def test_wrong_ca_is_named(
    echo_bundle: Path, certs: dict[str, Path], other_certs: dict[str, Path]
) -> None:
    async with run_server(_config(echo_bundle, **_tls(certs))) as server:
        error = await _refusal(server, ChannelSecurity(tls=True, tls_ca=other_certs["ca"]))
    assert error.reason == "unknown_ca"
    assert f"localhost:{server.port}: the server's TLS certificate is signed by an unknown CA" in str(error)
    assert str(other_certs["ca"]) in str(error)


async def test_expired_certificate_is_named(echo_bundle: Path, expired_certs: dict[str, Path]) -> None:
    async with run_server(_config(echo_bundle, **_tls(expired_certs))) as server:
        error = await _refusal(server, ChannelSecurity(tls=True, tls_ca=expired_certs["ca"]))
    assert error.reason == "expired"
    assert "the server's TLS certificate (or its CA) has expired" in str(error)
    assert str(error).endswith("not retrying")


async def test_wrong_host_name_is_named(echo_bundle: Path, certs: dict[str, Path]) -> None:
    async with run_server(_config(echo_bundle, **_tls(certs))) as server:
        error = await _refusal(
            server, ChannelSecurity(tls=True, tls_ca=certs["ca"], tls_server_name="gpu-box")
        )
    assert error.reason == "host_name"
    assert "not valid for host name 'gpu-box'" in str(error)
    assert "tls_server_name" in str(error)


async def test_server_name_override_accepts_a_listed_name(
    echo_bundle: Path, tmp_path: Path, certs: dict[str, Path]
) -> None:
    from inference_server.security import make_certs

    box = make_certs(tmp_path / "box", ["gpu-box"])  # lists gpu-box only, not 127.0.0.1
    async with run_server(_config(echo_bundle, **_tls(box))) as server:
        wrong = await _refusal(server, ChannelSecurity(tls=True, tls_ca=box["ca"]), host="127.0.0.1")
        assert wrong.reason == "host_name" and "'127.0.0.1'" in str(wrong)
        security = ChannelSecurity(tls=True, tls_ca=box["ca"], tls_server_name="gpu-box")
        async with _client(server, security, host="127.0.0.1") as client:
            assert await _serves(client) == "test-policy"


# -- mTLS -----------------------------------------------------------------------------------------


async def test_mtls_serves_a_client_with_a_certificate(echo_bundle: Path, certs: dict[str, Path]) -> None:
    security = ChannelSecurity(
        tls=True, tls_ca=certs["ca"], tls_cert=certs["client_cert"], tls_key=certs["client_key"]
    )
    async with (
        run_server(_config(echo_bundle, **_tls(certs, client_ca=True))) as server,
        _client(server, security) as client,
    ):
        assert await _serves(client) == "test-policy"


async def test_mtls_refuses_a_client_without_a_certificate(echo_bundle: Path, certs: dict[str, Path]) -> None:
    async with run_server(_config(echo_bundle, **_tls(certs, client_ca=True))) as server:
        error = await _refusal(server, ChannelSecurity(tls=True, tls_ca=certs["ca"]))
    assert error.reason == "client_certificate"
    assert "the server closed the TLS handshake: it wants a client certificate" in str(error)


async def test_mtls_refuses_a_certificate_of_another_ca(
    echo_bundle: Path, certs: dict[str, Path], other_certs: dict[str, Path]
) -> None:
    security = ChannelSecurity(
        tls=True, tls_ca=certs["ca"], tls_cert=other_certs["client_cert"], tls_key=other_certs["client_key"]
    )
    async with run_server(_config(echo_bundle, **_tls(certs, client_ca=True))) as server:
        error = await _refusal(server, security)
    assert error.reason == "client_certificate"
    assert "refused our client certificate" in str(error)


# -- tokens ---------------------------------------------------------------------------------------


async def test_token_accepted_and_never_logged(
    echo_bundle: Path, certs: dict[str, Path], token_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with run_server(_config(echo_bundle, token_file=token_file, **_tls(certs))) as server:
        async with _client(server, ChannelSecurity(tls=True, tls_ca=certs["ca"], token=TOKEN)) as client:
            assert await _serves(client) == "test-policy"
        wrong = await _refusal(server, ChannelSecurity(tls=True, tls_ca=certs["ca"], token=TOKEN[:-1] + "X"))
    assert wrong.reason == "token"
    assert "the server refused the token (UNAUTHENTICATED)" in str(wrong)
    assert "Bearer tokens required (2 from" in caplog.text  # the count and the file, not the tokens
    assert TOKEN not in caplog.text and TOKEN[:-1] not in caplog.text
    assert TOKEN not in repr(ChannelSecurity(token=TOKEN))


async def test_token_from_the_token_file(echo_bundle: Path, token_file: Path, tmp_path: Path) -> None:
    mine = tmp_path / "agent-token"
    mine.write_text(f"{TOKEN}\n")
    async with (
        run_server(_config(echo_bundle, token_file=token_file)) as server,
        _client(server, ChannelSecurity(token_file=mine)) as client,
    ):
        assert await _serves(client) == "test-policy"


async def test_missing_token_is_refused_with_a_fixed_detail(echo_bundle: Path, token_file: Path) -> None:
    async with run_server(_config(echo_bundle, token_file=token_file)) as server:
        error = await _refusal(server, ChannelSecurity())
        assert error.reason == "token"
        assert "the server requires a token (UNAUTHENTICATED): set server.token_file or VLA_TOKEN" in str(
            error
        )
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            details = []
            for metadata in (
                (),
                (("authorization", "Bearer nope-nope-nope-nope"),),
                (("authorization", TOKEN),),
            ):
                call = channel.stream_stream("/vla.v1.PolicyService/Predict")(metadata=metadata)
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await call.read()
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
                details.append(info.value.details())
    assert details == [UNAUTHENTICATED_DETAIL] * 3  # nothing that tells the three apart


async def test_health_is_exempt_from_the_token_and_reflection_can_be_off(
    echo_bundle: Path, token_file: Path
) -> None:
    config = dataclasses.replace(_config(echo_bundle, token_file=token_file), reflection=False)
    async with run_server(config) as server, grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflect = channel.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
        call = reflect(metadata=(("authorization", f"Bearer {TOKEN}"),))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call.read()
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_an_unreadable_certificate_is_fatal_and_named(tmp_path: Path) -> None:
    client = PolicyClient("127.0.0.1:1", security=ChannelSecurity(tls=True, tls_ca=tmp_path / "missing.pem"))
    with pytest.raises(
        TransportSecurityError, match=r"server\.tls_ca .*missing\.pem: cannot read it"
    ) as info:
        await client.connect()
    assert info.value.reason == "files"


# -- plaintext warning ----------------------------------------------------------------------------


async def test_plaintext_on_a_network_address_warns_once(
    echo_bundle: Path, certs: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="inference_server")

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if "without TLS" in r.getMessage()]

    for host, security, expected in (("0.0.0.0", {}, 1), ("0.0.0.0", _tls(certs), 0), ("127.0.0.1", {}, 0)):
        caplog.clear()
        server = Server(dataclasses.replace(_config(echo_bundle, **security), host=host, port=0))
        try:
            await server.startup()
        finally:
            await server.shutdown()
        assert len(warnings()) == expected, (host, security)
    caplog.clear()

"""The server's ``metrics_port`` in a file: ``false`` serves none (as in the agent's file), and
a port equal to the gRPC port is refused naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference_server.config import ServerConfig, load_config
from inference_server.errors import ConfigError


def test_metrics_port_false_in_a_file_serves_no_endpoint(tmp_path: Path) -> None:
    """TOML has no null: the file could not turn /metrics off ('metrics_port is False (bool),
    expected an integer (or None)'), while the agent's file takes false."""
    path = tmp_path / "server.toml"
    path.write_text('policy = "b"\nmetrics_port = false\n')
    assert load_config(path).metrics_port is None


def test_metrics_port_true_is_still_refused(tmp_path: Path) -> None:
    path = tmp_path / "server.toml"
    path.write_text('policy = "b"\nmetrics_port = true\n')
    with pytest.raises(ConfigError, match=r"metrics_port is True \(bool\), expected an integer") as info:
        load_config(path)
    assert info.value.field == "metrics_port"


def test_metrics_on_the_grpc_port_is_refused_naming_the_field() -> None:
    """'--port 50790 --metrics-port 50790' failed at bind with 'metrics port 50790 ... is already
    in use (another inference-server?)': it was this one's own gRPC port."""
    with pytest.raises(ConfigError, match=r"metrics_port is 50790, the gRPC port too") as info:
        ServerConfig(policy=Path("b"), port=50790, metrics_port=50790)
    assert info.value.field == "metrics_port"
    assert ServerConfig(policy=Path("b"), port=0, metrics_port=0).metrics_port == 0  # both: any free port


def test_max_request_bytes_past_the_grpc_int32_limit_is_refused_naming_the_field() -> None:
    """'--max-request-bytes 100000000000' ended the server with 'OverflowError: value too large
    to convert to int (unexpected ...)': the transport limit, 2x it + 64 MiB, is a C int32."""
    from inference_server.config import MAX_REQUEST_BYTES_LIMIT
    from inference_server.service import transport_limit

    assert (
        transport_limit(MAX_REQUEST_BYTES_LIMIT)
        <= (1 << 31) - 1
        < transport_limit(MAX_REQUEST_BYTES_LIMIT + 1)
    )
    with pytest.raises(
        ConfigError, match=rf"max_request_bytes is 100000000000, expected 1024\.\.{MAX_REQUEST_BYTES_LIMIT}"
    ):
        ServerConfig(policy=Path("b"), max_request_bytes=100_000_000_000)
    assert (
        ServerConfig(policy=Path("b"), max_request_bytes=MAX_REQUEST_BYTES_LIMIT).max_request_bytes
        == MAX_REQUEST_BYTES_LIMIT
    )


@pytest.mark.parametrize(
    ("field", "limit"),
    [
        ("keepalive_time_ms", 2**31 - 1),
        ("keepalive_timeout_ms", 2**31 - 1),
        ("keepalive_min_ping_interval_ms", 2**31 - 1),
        ("max_batch", 2**32 - 1),
    ],
)
def test_values_past_what_grpc_or_the_wire_can_hold_are_refused(field: str, limit: int) -> None:
    """keepalive_* = 1e11 ended the server with an unexpected OverflowError (a C int channel
    option), max_batch = 1e11 with 'ValueError: Value out of range' (PolicySpec's uint32)."""
    with pytest.raises(ConfigError, match=rf"^{field} is {limit + 1}, expected at most {limit}$") as info:
        ServerConfig(policy=Path("b"), **{field: limit + 1})  # type: ignore[arg-type]
    assert info.value.field == field
    assert getattr(ServerConfig(policy=Path("b"), **{field: limit}), field) == limit  # type: ignore[arg-type]

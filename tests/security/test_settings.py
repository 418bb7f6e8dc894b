"""Settings of transport security: config checks, flags, the token's sources, ``make-certs``."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from inference_server import ServerConfig
from inference_server import cli as server_cli
from inference_server.config import load_config
from inference_server.errors import ConfigError as ServerConfigError
from inference_server.security import TokenInterceptor, read_tokens
from inference_server.server import is_loopback, transport_security
from robot_agent import cli as agent_cli
from robot_agent.config import AgentConfig
from robot_agent.errors import ConfigError as AgentConfigError
from robot_agent.security import ChannelSecurity
from tests.security.conftest import TOKEN


def test_server_flags_become_the_config(tmp_path: Path) -> None:
    with mock.patch.object(server_cli, "run") as run:
        server_cli.main(
            ["--policy", str(tmp_path), "--tls-cert", "s.pem", "--tls-key", "s.key", "--tls-client-ca", "ca.pem",
             "--token-file", "tokens", "--no-reflection"]
        )  # fmt: skip
    config = run.call_args.args[0]
    assert (config.tls_cert, config.tls_key, config.tls_client_ca) == (
        Path("s.pem"),
        Path("s.key"),
        Path("ca.pem"),
    )
    assert config.token_file == Path("tokens") and config.reflection is False
    with mock.patch.object(server_cli, "run") as run:
        server_cli.main(["--policy", str(tmp_path)])
    assert run.call_args.args[0].reflection is True and run.call_args.args[0].tls_cert is None


def test_server_has_no_flag_for_a_token(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        server_cli.main(["--policy", ".", "--token", TOKEN])  # not taken for --token-file either
    err = capsys.readouterr().err
    assert "there is no --token flag (ps shows flags to every user): use --token-file FILE" in err
    assert TOKEN not in err


def test_server_config_file_paths_are_relative_to_it(tmp_path: Path) -> None:
    path = tmp_path / "server.toml"
    path.write_text(
        'policy = "b"\ntls_cert = "certs/server.pem"\ntls_key = "certs/server.key"\nreflection = false\n'
    )
    config = load_config(path)
    assert config.tls_cert == tmp_path / "certs" / "server.pem" and config.reflection is False


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"tls_cert": "a.pem"}, "tls_key", "TLS needs both tls_cert and tls_key"),
        ({"tls_key": "a.key"}, "tls_cert", "TLS needs both tls_cert and tls_key"),
        ({"tls_client_ca": "ca.pem"}, "tls_client_ca", "needs TLS"),
        ({"reflection": "no"}, "reflection", "expected true or false"),
    ],
)
def test_server_config_refuses_half_tls(fields: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(ServerConfigError, match=words) as info:
        ServerConfig(policy=Path("."), **fields)
    assert info.value.field == field


def test_server_files_that_cannot_be_used_are_named(tmp_path: Path, certs: dict[str, Path]) -> None:
    config = ServerConfig(policy=Path("."), tls_cert=certs["server_cert"], tls_key=tmp_path / "nope.key")
    with pytest.raises(ServerConfigError, match=r"tls_key .*nope\.key: cannot read it") as info:
        transport_security(config)
    assert info.value.field == "tls_key"
    config = ServerConfig(policy=Path("."), tls_cert=certs["server_key"], tls_key=certs["server_key"])
    with pytest.raises(ServerConfigError, match=r"tls_cert .*not a PEM file with a CERTIFICATE"):
        transport_security(config)


@pytest.mark.parametrize(
    ("text", "words"),
    [("# nothing\n\n", "holds no token"), ("short\n", "line 1 is not a usable token"),
     (f"{TOKEN}\nhas a space in it, long enough\n", "line 2 is not a usable token")],
)  # fmt: skip
def test_token_files_that_cannot_be_used_are_named_without_the_token(
    tmp_path: Path, text: str, words: str
) -> None:
    path = tmp_path / "tokens"
    path.write_text(text)
    with pytest.raises(ServerConfigError, match=words) as info:
        read_tokens(path)
    assert TOKEN not in str(info.value) and "space in it" not in str(info.value)


def test_the_interceptor_accepts_only_the_known_tokens() -> None:
    check = TokenInterceptor([TOKEN.encode(), b"second-token-0123456789"])
    assert check.allows(TOKEN.encode()) and check.allows(b"second-token-0123456789")
    assert not check.allows(None) and not check.allows(b"") and not check.allows(TOKEN.encode()[:-1])
    assert not check.allows(TOKEN.encode() + b"x")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True), ("localhost", True),
     ("0.0.0.0", False), ("::", False), ("192.168.1.5", False), ("gpu-box", False)],
)  # fmt: skip
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_agent_flags_and_the_token_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: dict[str, Any] = {}

    def fake_run(config: AgentConfig, *, run_dir: Path) -> dict[str, Any]:
        seen["config"] = config
        raise SystemExit(0)

    monkeypatch.setattr(agent_cli, "run", fake_run)
    monkeypatch.setenv("VLA_TOKEN", TOKEN)
    with pytest.raises(SystemExit):
        agent_cli.main(
            ["--server", "gpu-box:50051", "--tls-ca", "ca.pem", "--tls-cert", "c.pem", "--tls-key", "c.key",
             "--tls-server-name", "box", "--token-file", "t"]
        )  # fmt: skip
    server = seen["config"].server
    assert (server.tls_ca, server.tls_cert, server.tls_key) == ("ca.pem", "c.pem", "c.key")
    assert (server.tls_server_name, server.token_file, server.token) == ("box", "t", TOKEN)
    assert TOKEN not in repr(seen["config"])
    security = ChannelSecurity.from_config(server)
    assert security.tls and security.tls_ca == Path("ca.pem") and security.token == TOKEN
    with pytest.raises(SystemExit):
        agent_cli.main(["--token", TOKEN])
    err = capsys.readouterr().err
    assert (
        "there is no --token flag (ps shows flags to every user): use --token-file FILE or $VLA_TOKEN" in err
    )
    assert TOKEN not in err


@pytest.mark.parametrize(
    ("server", "field"),
    [({"tls_ca": "ca.pem", "tls_cert": "c.pem"}, "server.tls_key"),
     ({"tls_cert": "c.pem", "tls_key": "c.key"}, "server.tls_cert"),
     ({"tls_server_name": "box"}, "server.tls_server_name")],
)  # fmt: skip
def test_agent_config_refuses_half_tls(server: dict[str, str], field: str) -> None:
    with pytest.raises(AgentConfigError) as info:
        AgentConfig.from_mapping({"server": server})
    assert info.value.field == field


def test_agent_token_file_first_line_is_sent(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(f"# the lab's token\n{TOKEN}\nignored-second-line-123456\n")
    loaded = ChannelSecurity(token_file=path).load()
    assert loaded.metadata == (("authorization", f"Bearer {TOKEN}"),) and loaded.credentials is None
    assert TOKEN not in repr(loaded)


def test_make_certs_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cryptography import x509

    server_cli.main(
        ["make-certs", str(tmp_path / "lab"), "--host", "gpu-box", "--host", "10.0.0.2", "--days", "7"]
    )
    out = capsys.readouterr().out
    assert "--tls-cert" in out and "--tls-ca" in out
    cert = x509.load_pem_x509_certificate((tmp_path / "lab" / "server.pem").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["gpu-box"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["10.0.0.2"]
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 7  # 7 days and 5 minutes
    assert (tmp_path / "lab" / "server.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "lab" / "ca.key").stat().st_mode & 0o777 == 0o600


def test_server_tokens_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLA_TOKENS", f"  {TOKEN}\n second-token-0123456789 ")
    with mock.patch.object(server_cli, "run") as run:
        server_cli.main(["--policy", str(tmp_path)])
    assert run.call_args.args[1] == (TOKEN.encode(), b"second-token-0123456789")


def test_server_refuses_an_unusable_environment_token_without_echoing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VLA_TOKENS", f"{TOKEN} tooshort-secret")
    with mock.patch.object(server_cli, "run") as run, pytest.raises(SystemExit) as info:
        server_cli.main(["--policy", str(tmp_path)])
    run.assert_not_called()
    err = capsys.readouterr().err.strip()
    assert info.value.code == 1
    assert (
        err == "ConfigError: $VLA_TOKENS: line 2 is not a usable token (16+ printable characters, no spaces)"
    )
    assert "tooshort" not in err


async def test_server_tokens_given_directly_are_required(echo_bundle: Path) -> None:
    from robot_agent.errors import TransportSecurityError
    from robot_agent.policy_client import PolicyClient
    from tests.utils import run_server

    config = ServerConfig(policy=echo_bundle, metrics_port=None, warmup_iters=0)
    async with run_server(config, tokens=[TOKEN.encode()]) as server:
        client = PolicyClient(f"127.0.0.1:{server.port}", connect_timeout_s=5.0)
        with pytest.raises(TransportSecurityError, match="requires a token"):
            await client.connect()
        await client.close()

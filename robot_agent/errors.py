"""Every error the robot agent raises on purpose, in one hierarchy.

    AgentError
    ├── ConfigError          the configuration is wrong (names the field and the value)
    ├── SpecMismatch         the served policy does not fit this robot and its cameras
    ├── ServerUnavailable    the inference server cannot be reached or the stream broke
    ├── NotAPolicyServer     the address answers, but not as a gRPC PolicyService (not retried)
    │   └── TransportSecurityError  a certificate or token problem: expired, wrong host name,
    │                        unknown CA, client certificate wanted or refused, token refused
    ├── DriverError          the robot driver failed (connect, read or command)
    ├── CameraError          a camera failed to open or to deliver frames
    ├── MissingExtra         an optional dependency is not installed (gives the pip line)
    ├── RunFileError         a run dir or run file cannot be used (``runfile.py``; names the path)
    ├── EstopRefused         ``robot-agent estop``'s target is not a running agent: nothing signalled
    └── RobotInUse           a live agent already drives this arm (names its pid)

Foreign exceptions are translated at one boundary each: ``grpc.aio.AioRpcError`` in
``policy_client.py``, SDK errors in each driver and camera. ``cli.py`` prints
``TypeName: message`` and exits 1.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "AgentError",
    "CameraError",
    "ConfigError",
    "DriverError",
    "EstopRefused",
    "MissingExtra",
    "NotAPolicyServer",
    "RobotInUse",
    "RunFileError",
    "ServerUnavailable",
    "SpecMismatch",
    "TransportSecurityError",
]


class AgentError(Exception):
    """Base class of every error the agent raises on purpose."""


class ConfigError(AgentError):
    """Raised when a configuration value is invalid; ``field`` names it (``control.rate_hz``)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class SpecMismatch(AgentError):
    """Raised when the policy spec read from the server does not fit the robot or its cameras."""


class ServerUnavailable(AgentError):
    """Raised when the inference server cannot be reached, or the stream to it broke."""

    def __init__(self, message: str, *, address: str | None = None) -> None:
        super().__init__(message)
        self.address = address


class NotAPolicyServer(AgentError):
    """Raised when something answers at the server address but is not a gRPC ``PolicyService`` (an
    HTTP/1 server, another gRPC service): fatal, since waiting would not turn it into one."""

    def __init__(self, message: str, *, address: str | None = None) -> None:
        super().__init__(message)
        self.address = address


class TransportSecurityError(NotAPolicyServer):
    """Raised when the server cannot be used for a certificate or token problem; ``reason`` names
    it (``expired``, ``not_yet_valid``, ``host_name``, ``unknown_ca``, ``client_certificate``,
    ``tls``, ``token``). A :class:`NotAPolicyServer`, so it is fatal too: retrying would present
    the same certificate and token again, and the server being down is a different error
    (:class:`ServerUnavailable`)."""

    def __init__(self, message: str, *, address: str | None = None, reason: str) -> None:
        super().__init__(message, address=address)
        self.reason = reason


class DriverError(AgentError):
    """Raised when a robot driver fails to connect, read the state or send a command."""


class CameraError(AgentError):
    """Raised when a camera cannot be opened or stops delivering frames."""


class MissingExtra(AgentError):
    """Raised when a driver or camera needs a package that is not installed."""


class RunFileError(AgentError):
    """Raised when a run directory or run file cannot be used: unsafe owner or mode, unreadable,
    not JSON, or not written by a robot-agent; ``path`` names it."""

    def __init__(self, message: str, *, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


class EstopRefused(AgentError):
    """Raised by ``robot-agent estop`` when its target is not a running robot-agent (no run file, a
    stale one, several agents and no ``--pid``, or one already stopping); nothing is signalled."""


class RobotInUse(AgentError):
    """Raised by ``robot-agent`` and ``robot-agent check`` when a live agent already drives the arm;
    ``pid`` is that agent's."""

    def __init__(self, message: str, *, pid: int) -> None:
        super().__init__(message)
        self.pid = pid

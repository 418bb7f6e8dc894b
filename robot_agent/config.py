"""What the agent runs: one frozen config object, every default in one place.

Built from ``--config agent.toml`` with flags overriding (``cli.py``) by the shared loader
(``safety.config_loader``). Each section checks itself in its constructor, so a config built in code
(``AgentConfig(control=ControlConfig(rate_hz=250))``, as ``vla_demo`` does) is checked as one read
from a file, before anything connects. Every error names the field and the value::

    ConfigError: control.rate_hz is -5.0, must be > 0

Example ``agent.toml``::

    instruction = "touch the red cube"
    metrics_port = 9101      # 0: any free port (logged); false: no endpoint
    metrics_host = "0.0.0.0" # every interface; "127.0.0.1": this machine only

    [server]
    address = "gpu-box:50051"

    [robot]
    kind = "franka"
    ip = "172.16.0.2"

    [cameras.front]
    kind = "realsense"
    serial = "123456789"

    [control]
    rate_hz = 250
    blend = "ensemble"
    interpolation = "ruckig"

    [safety]             # handed as is to safety.SafetyConfig.from_mapping
    keep_out_margin_m = 0.005

    [safety.workspace]   # metres, robot base frame
    min = [0.2, -0.5, 0.0]
    max = [0.7, 0.5, 0.6]

    [record]
    dir = "episodes/run-1"
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robot_agent.errors import ConfigError
from safety.config_loader import build, check_keys, check_types, read_toml, set_dotted

__all__ = [
    "BLEND_MODES",
    "INTERPOLATIONS",
    "AgentConfig",
    "CameraConfig",
    "ControlConfig",
    "RecordConfig",
    "RobotConfig",
    "SchedulerConfig",
    "ServerConfig",
]

#: The highest control rate accepted, Hz: libfranka's real-time loop (1 kHz, Franka "Robot and
#: interface specifications"); the xArm's servo mode takes up to 250 Hz.
MAX_RATE_HZ = 1000.0

BLEND_MODES = ("replace", "crossfade", "ensemble")
INTERPOLATIONS = ("linear", "cubic", "minimum_jerk", "ruckig")


@dataclass(frozen=True)
class RobotConfig:
    """The ``[robot]`` section. ``options`` holds driver-specific keys, validated by the driver.

    Example::

        [robot]
        kind = "franka"
        ip = "172.16.0.2"

    Raises :class:`ConfigError` naming ``robot.<key>`` for a wrong type or value.
    """

    kind: str = "sim"  # sim | franka | xarm
    ip: str | None = None
    connect_timeout_s: float = 5.0
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_types(self, ConfigError, section="robot")
        _positive("robot.connect_timeout_s", self.connect_timeout_s)


@dataclass(frozen=True)
class CameraConfig:
    """One ``[cameras.NAME]`` section; ``name`` must match a camera of the policy spec.

    Raises :class:`ConfigError` naming ``cameras.NAME.<key>`` for a wrong type or value.
    """

    name: str
    kind: str = "sim"  # sim | realsense | usb
    width: int = 640
    height: int = 480
    fps: int = 30
    serial: str | None = None  # RealSense serial number
    device: str | int | None = None  # USB: index or /dev/video path
    # Oldest frame an observation may use, ms after its capture; None: 3 frame periods (3000/fps).
    # Never more than server.request_timeout_ms. Older: no request, the arm holds (stale_observation).
    max_age_ms: float | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"cameras.{self.name}"
        check_types(self, ConfigError, section=where)
        _positive(f"{where}.width", self.width)
        _positive(f"{where}.height", self.height)
        _positive(f"{where}.fps", self.fps)
        if self.max_age_ms is not None:
            _positive(f"{where}.max_age_ms", self.max_age_ms)

    def max_age_s(self, request_timeout_ms: float) -> float:
        """The frame age bound in seconds: ``max_age_ms`` or 3 frame periods, capped by the request budget."""
        bound_ms = self.max_age_ms if self.max_age_ms is not None else 3000.0 / self.fps
        return min(bound_ms, request_timeout_ms) / 1000.0


@dataclass(frozen=True)
class ServerConfig:
    """The ``[server]`` section: where the policy runs and how the stream behaves.

    Raises :class:`ConfigError` naming ``server.<key>`` for a wrong type or value.
    """

    address: str = "127.0.0.1:50051"
    session_id: str | None = None  # None: a fresh random id per run
    # Budget each request carries (``timeout_ms``); a request still queued after it is answered LATE.
    request_timeout_ms: int = 1000
    connect_timeout_s: float = 2.0
    # Reconnect backoff: first wait, growth factor, ceiling, and +- jitter fraction.
    backoff_initial_s: float = 0.2
    backoff_factor: float = 2.0
    backoff_max_s: float = 5.0
    backoff_jitter: float = 0.2
    jpeg_quality: int = 90
    # Fault injection for evaluation: delay added on the agent's side of the stream.
    inject_latency_ms: float = 0.0
    inject_jitter_ms: float = 0.0
    # After a reconnect, a policy of another name, version or action space stops the run
    # (SpecMismatch) unless this is true; either way it is a 'policy_change' event in the recording.
    allow_policy_change: bool = False
    # Transport security (README "Security"). tls: TLS with the system's CAs; tls_ca: TLS trusting
    # that CA file only. tls_cert + tls_key: a client certificate (mTLS). tls_server_name: the name
    # the server's certificate must list, when it is not the address's host. The bearer token comes
    # from VLA_TOKEN (cli.py puts it in ``token``) or the first line of token_file; never a flag.
    tls: bool = False
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_server_name: str | None = None
    token_file: str | None = None
    token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        check_types(self, ConfigError, section="server")
        _address("server.address", self.address)
        if (self.tls_cert is None) != (self.tls_key is None):
            missing = "server.tls_key" if self.tls_key is None else "server.tls_cert"
            raise ConfigError(
                f"{missing} is not set: a client certificate needs both tls_cert and tls_key", field=missing
            )
        tls_on = self.tls or self.tls_ca is not None
        for name in ("tls_cert", "tls_server_name"):
            if getattr(self, name) is not None and not tls_on:
                raise ConfigError(
                    f"server.{name} is set but TLS is off: set server.tls_ca (or server.tls = true)",
                    field=f"server.{name}",
                )
        _positive("server.request_timeout_ms", self.request_timeout_ms)
        if self.request_timeout_ms > _UINT32_MAX:  # PredictRequest.timeout_ms is a uint32
            raise ConfigError(
                f"server.request_timeout_ms is {self.request_timeout_ms}, expected at most {_UINT32_MAX} "
                "(the wire's uint32)",
                field="server.request_timeout_ms",
            )
        _positive("server.connect_timeout_s", self.connect_timeout_s)
        if self.connect_timeout_s > _GRPC_TIMEOUT_MAX_S:
            raise ConfigError(
                f"server.connect_timeout_s is {self.connect_timeout_s:g}, expected at most "
                f"{_GRPC_TIMEOUT_MAX_S:g} (a gRPC deadline)",
                field="server.connect_timeout_s",
            )
        _positive("server.backoff_initial_s", self.backoff_initial_s)
        _at_least("server.backoff_factor", self.backoff_factor, 1)
        if self.backoff_max_s < self.backoff_initial_s:
            raise ConfigError(
                f"server.backoff_max_s is {self.backoff_max_s}, below server.backoff_initial_s "
                f"{self.backoff_initial_s}",
                field="server.backoff_max_s",
            )
        if not 0 <= self.backoff_jitter < 1:
            raise ConfigError(
                f"server.backoff_jitter is {self.backoff_jitter}, must be in [0, 1)",
                field="server.backoff_jitter",
            )
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(
                f"server.jpeg_quality is {self.jpeg_quality}, must be in 1..100", field="server.jpeg_quality"
            )
        _at_least("server.inject_latency_ms", self.inject_latency_ms, 0)
        _at_least("server.inject_jitter_ms", self.inject_jitter_ms, 0)


@dataclass(frozen=True)
class ControlConfig:
    """The ``[control]`` section: the fixed-rate loop, chunk blending and interpolation.

    Raises :class:`ConfigError` naming ``control.<key>`` for a wrong type or value.
    """

    rate_hz: float = 100.0
    blend: str = "crossfade"  # replace | crossfade | ensemble
    crossfade_steps: int = 3  # actions of the new chunk over which the old one fades out
    ensemble_decay: float = 0.1  # ACT: weight exp(-decay * i), i = 0 for the oldest prediction
    interpolation: str = "minimum_jerk"  # linear | cubic | minimum_jerk | ruckig
    # Ruckig limits per kind of degree of freedom: (velocity, acceleration, jerk) per second.
    ruckig_translation: tuple[float, float, float] = (0.5, 5.0, 200.0)
    ruckig_rotation: tuple[float, float, float] = (1.5, 15.0, 500.0)
    ruckig_joint: tuple[float, float, float] = (1.5, 15.0, 500.0)
    ruckig_gripper: tuple[float, float, float] = (2.0, 20.0, 1000.0)
    # A robot state older than this (or not advancing for this long) holds the arm with
    # stale_observation until a fresh one arrives; None: three control periods.
    max_state_age_s: float | None = None
    # This many control ticks in a row that raised (trajectory, conversion, shield, recorder,
    # metrics) latch the e-stop; each single one is a hold named after its stage.
    max_consecutive_faults: int = 5

    def __post_init__(self) -> None:
        check_types(self, ConfigError, section="control")
        _positive("control.rate_hz", self.rate_hz)
        if self.rate_hz > MAX_RATE_HZ:
            raise ConfigError(
                f"control.rate_hz is {self.rate_hz:g}, must be <= {MAX_RATE_HZ:g} (no arm this agent drives "
                "takes commands faster: the Franka's own control loop runs at 1 kHz)",
                field="control.rate_hz",
            )
        _choice("control.blend", self.blend, BLEND_MODES)
        _choice("control.interpolation", self.interpolation, INTERPOLATIONS)
        _at_least("control.crossfade_steps", self.crossfade_steps, 1)
        _at_least("control.ensemble_decay", self.ensemble_decay, 0)
        for name in ("ruckig_translation", "ruckig_rotation", "ruckig_joint", "ruckig_gripper"):
            value = getattr(self, name)
            if not all(math.isfinite(v) and v > 0 for v in value):
                raise ConfigError(
                    f"control.{name} is {list(value)}, must be three positive numbers (velocity, acceleration, jerk)",
                    field=f"control.{name}",
                )
        if self.max_state_age_s is not None:
            _positive("control.max_state_age_s", self.max_state_age_s)
        _at_least("control.max_consecutive_faults", self.max_consecutive_faults, 1)


@dataclass(frozen=True)
class SchedulerConfig:
    """The ``[scheduler]`` section: when to ask for the next chunk.

    Raises :class:`ConfigError` naming ``scheduler.<key>`` for a wrong type or value.
    """

    rtt_quantile: float = 0.9  # high quantile of recent round trips: robust, not the mean
    rtt_window: int = 50
    rtt_ignore_first: int = 1  # the first call (lazy init, cudnn autotune) is not representative
    rtt_initial_s: float = 0.1  # the estimate before anything was measured
    margin_s: float = 0.03  # ask this much earlier than the estimate says
    # > 0: also ask this long after the previous request, to re-plan before a chunk is used up.
    replan_interval_s: float = 0.0
    # Ask for the next chunk once this share of the current one (from its capture) has been
    # executed: openpi's replan_steps / action_horizon, LeRobot's chunk_size_threshold, RTC's
    # execution horizon. The deadline (round trip + margin before the plan ends) stays a floor.
    execution_horizon: float = 0.5
    # Few samples say little about the tail: the estimate is also at least mean + k * std, with
    # the std pooled with a prior (rtt_prior_std_s, worth one sample) until samples accumulate.
    rtt_std_factor: float = 2.0
    rtt_prior_std_s: float = 0.05

    def __post_init__(self) -> None:
        check_types(self, ConfigError, section="scheduler")
        if not 0 < self.rtt_quantile <= 1:
            raise ConfigError(
                f"scheduler.rtt_quantile is {self.rtt_quantile}, must be in (0, 1]",
                field="scheduler.rtt_quantile",
            )
        _at_least("scheduler.rtt_window", self.rtt_window, 1)
        _at_least("scheduler.rtt_ignore_first", self.rtt_ignore_first, 0)
        _positive("scheduler.rtt_initial_s", self.rtt_initial_s)
        _at_least("scheduler.margin_s", self.margin_s, 0)
        if not 0 < self.execution_horizon <= 1:
            raise ConfigError(
                f"scheduler.execution_horizon is {self.execution_horizon}, must be in (0, 1]",
                field="scheduler.execution_horizon",
            )
        _at_least("scheduler.rtt_std_factor", self.rtt_std_factor, 0)
        _at_least("scheduler.rtt_prior_std_s", self.rtt_prior_std_s, 0)
        _at_least("scheduler.replan_interval_s", self.replan_interval_s, 0)


@dataclass(frozen=True)
class RecordConfig:
    """The ``[record]`` section: ``--record DIR`` writes an episode folder there."""

    dir: str | None = None
    video: bool = True

    def __post_init__(self) -> None:
        check_types(self, ConfigError, section="record")


@dataclass(frozen=True)
class AgentConfig:
    """Everything the agent runs with. Build with :meth:`load`, :meth:`from_mapping`, or in code::

        AgentConfig(server=ServerConfig(address="gpu-box:50051"), control=ControlConfig(rate_hz=250))

    Every section checks itself when built; this class checks the top-level keys. Raises
    :class:`ConfigError` naming the field (``control.rate_hz``) and the value.

    Cameras named in ``cameras`` are opened before the server is contacted; a camera the policy
    asks for that is not configured is created after the spec is read, of kind ``default_camera``.
    """

    server: ServerConfig = field(default_factory=ServerConfig)
    robot: RobotConfig = field(default_factory=RobotConfig)
    cameras: Mapping[str, CameraConfig] = field(default_factory=dict)
    control: ControlConfig = field(default_factory=ControlConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    safety: Mapping[str, Any] = field(default_factory=dict)  # handed as is to safety.SafetyConfig
    record: RecordConfig = field(default_factory=RecordConfig)
    instruction: str = ""
    duration_s: float | None = None  # None: until SIGINT / SIGTERM
    # Prometheus endpoint: 0 binds any free port (logged); None (``metrics_port = false`` in the
    # file, ``--metrics-port off``) serves none. Bound on ``metrics_host``, every interface by default.
    metrics_port: int | None = 9101
    metrics_host: str = "0.0.0.0"
    default_camera: str = "sim"

    def __post_init__(self) -> None:
        check_types(self, ConfigError)
        for name, cam in self.cameras.items():
            if cam.name != name:
                raise ConfigError(
                    f"cameras.{name}.name is {cam.name!r}, must be the table's name {name!r}",
                    field=f"cameras.{name}.name",
                )
        if self.duration_s is not None:
            _positive("duration_s", self.duration_s)
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ConfigError(
                f"metrics_port is {self.metrics_port}, must be in 0..65535 (0: any free port), "
                "or false for no endpoint",
                field="metrics_port",
            )
        host = self.metrics_host
        if not host or any(c.isspace() or c in "/[]" for c in host) or host.count(":") == 1:
            raise ConfigError(
                f"metrics_host is {host!r}, expected a host name or an IP address, no port or scheme "
                "(0.0.0.0: every interface, 127.0.0.1: this machine only)",
                field="metrics_host",
            )

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> AgentConfig:
        """Read ``path`` (TOML) if given, apply ``overrides`` (same shape, dotted keys allowed:
        ``{"control.rate_hz": 250}``), and return the checked config.

        Raises :class:`ConfigError`: a missing or broken file, or a key the file should not have,
        names the file (``config agent.toml: control: unknown key 'rat_hz'``); a bad value names
        the field.
        """
        data: dict[str, Any] = {}
        if path is not None:
            label = f"config {path}"
            data = read_toml(path, _file_error, label=label)
            check_keys(cls, data, ConfigError, source=label)
        for key, value in (overrides or {}).items():
            set_dotted(data, key, value, ConfigError)
        return cls.from_mapping(data)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> AgentConfig:
        """Build and check from a plain mapping (a parsed TOML document); see :func:`safety.config_loader.build`."""
        return build(cls, data, ConfigError)

    def camera_for(self, name: str, height: int, width: int) -> CameraConfig:
        """The config of camera ``name``: the configured one, or a ``default_camera`` of that size."""
        if name in self.cameras:
            return self.cameras[name]
        return CameraConfig(name=name, kind=self.default_camera, width=width, height=height)


def _file_error(message: str, *, field: str | None = None) -> ConfigError:
    """A :class:`ConfigError` about the config file itself (missing, unreadable, not TOML)."""
    return ConfigError(message, field=field or "config")


def _address(where: str, value: str) -> None:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6), port 1-65535, no scheme: gRPC's target is not a URL."""
    if "://" in value or value.startswith(("dns:", "unix:", "ipv4:", "ipv6:")):
        scheme = value.split(":", 1)[0]
        rest = value.split("://", 1)[1] if "://" in value else value.split(":", 1)[1]
        raise ConfigError(
            f"{where} is {value!r}: no scheme ({scheme}:) here, the agent speaks plain gRPC to HOST:PORT; "
            f"write {rest.strip('/')!r}",
            field=where,
        )
    host, _, port = value.rpartition(":")
    if not host or host in ("[]",) or not port.isdigit() or not 1 <= int(port) <= 65535 or "/" in host:
        raise ConfigError(
            f"{where} is {value!r}, expected HOST:PORT (port 1-65535, IPv6 as [::1]:PORT)", field=where
        )
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise ConfigError(
            f"{where} is {value!r}: write an IPv6 host in brackets, [{host}]:{port}", field=where
        )


# PredictRequest.timeout_ms is a uint32: a larger request_timeout_ms was accepted, then every
# request failed to build ('Value out of range') and the arm held for the whole run, exit 0.
_UINT32_MAX = (1 << 32) - 1
# gRPC deadlines are int64 nanoseconds: connect_timeout_s = 9e9 (or 1e300) overflowed into an
# instant DEADLINE_EXCEEDED, reported as 'no inference server answering' by a healthy server.
_GRPC_TIMEOUT_MAX_S = 1e9


def _positive(where: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{where} is {value!r}, must be > 0", field=where)


def _at_least(where: str, value: float, low: float) -> None:
    if not value >= low:
        raise ConfigError(f"{where} is {value!r}, must be >= {low}", field=where)


def _choice(where: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{where} is {value!r}, expected one of {', '.join(choices)}", field=where)

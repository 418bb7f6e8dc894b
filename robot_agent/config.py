"""What the agent runs: one frozen config object, every default in one place.

Built from ``--config agent.toml`` with flags overriding (``cli.py``), validated once before
anything connects. Every error names the field and the value::

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

import dataclasses
import math
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robot_agent.errors import ConfigError

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
    """

    kind: str = "sim"  # sim | franka | xarm
    ip: str | None = None
    connect_timeout_s: float = 5.0
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CameraConfig:
    """One ``[cameras.NAME]`` section; ``name`` must match a camera of the policy spec."""

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

    def max_age_s(self, request_timeout_ms: float) -> float:
        """The frame age bound in seconds: ``max_age_ms`` or 3 frame periods, capped by the request budget."""
        bound_ms = self.max_age_ms if self.max_age_ms is not None else 3000.0 / self.fps
        return min(bound_ms, request_timeout_ms) / 1000.0


@dataclass(frozen=True)
class ServerConfig:
    """The ``[server]`` section: where the policy runs and how the stream behaves."""

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


@dataclass(frozen=True)
class ControlConfig:
    """The ``[control]`` section: the fixed-rate loop, chunk blending and interpolation."""

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


@dataclass(frozen=True)
class SchedulerConfig:
    """The ``[scheduler]`` section: when to ask for the next chunk."""

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


@dataclass(frozen=True)
class RecordConfig:
    """The ``[record]`` section: ``--record DIR`` writes an episode folder there."""

    dir: str | None = None
    video: bool = True


@dataclass(frozen=True)
class AgentConfig:
    """Everything the agent runs with. Build with :meth:`load` or :meth:`from_mapping`.

    Cameras named in ``cameras`` are opened before the server is contacted; a camera the policy
    asks for that is not configured is created after the spec is read, of kind ``default_camera``.
    """

    server: ServerConfig = field(default_factory=ServerConfig)
    robot: RobotConfig = field(default_factory=RobotConfig)
    cameras: Mapping[str, CameraConfig] = field(default_factory=dict)
    control: ControlConfig = field(default_factory=ControlConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    safety: Mapping[str, Any] = field(default_factory=dict)
    record: RecordConfig = field(default_factory=RecordConfig)
    instruction: str = ""
    duration_s: float | None = None  # None: until SIGINT / SIGTERM
    # Prometheus endpoint: 0 binds any free port (logged); None (``metrics_port = false`` in the
    # file, ``--metrics-port off``) serves none. Bound on ``metrics_host``, every interface by default.
    metrics_port: int | None = 9101
    metrics_host: str = "0.0.0.0"
    default_camera: str = "sim"

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> AgentConfig:
        """Read ``path`` (TOML) if given, apply ``overrides`` (same shape, dotted keys allowed:
        ``{"control.rate_hz": 250}``), validate, and return the config."""
        data: dict[str, Any] = {}
        if path is not None:
            try:
                data = tomllib.loads(Path(path).read_text())
            except FileNotFoundError:
                raise ConfigError(f"config file {str(path)!r} does not exist", field="config") from None
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(
                    f"config file {str(path)!r} is not valid TOML: {exc}", field="config"
                ) from None
        for key, value in (overrides or {}).items():
            _set_dotted(data, key, value)
        return cls.from_mapping(data)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> AgentConfig:
        """Build and validate from a plain mapping (a parsed TOML document)."""
        data = dict(data)
        cameras_raw = data.pop("cameras", {}) or {}
        if not isinstance(cameras_raw, Mapping):
            raise ConfigError(
                f"cameras must be a table of [cameras.NAME] sections, got {cameras_raw!r}", field="cameras"
            )
        cameras: dict[str, CameraConfig] = {}
        for name, section in cameras_raw.items():
            if not isinstance(section, Mapping):
                raise ConfigError(f"cameras.{name} must be a table, got {section!r}", field=f"cameras.{name}")
            section = {"name": name, **section}
            cameras[name] = _build(CameraConfig, section, f"cameras.{name}")
        safety = data.pop("safety", {}) or {}
        if not isinstance(safety, Mapping):
            raise ConfigError(f"safety must be a table, got {safety!r}", field="safety")
        sections = {
            "server": ServerConfig,
            "robot": RobotConfig,
            "control": ControlConfig,
            "scheduler": SchedulerConfig,
            "record": RecordConfig,
        }
        built: dict[str, Any] = {}
        for name, section_cls in sections.items():
            raw = data.pop(name, {}) or {}
            if not isinstance(raw, Mapping):
                raise ConfigError(f"{name} must be a table, got {raw!r}", field=name)
            built[name] = _build(section_cls, raw, name)
        if data.get("metrics_port") is False:  # TOML has no null: false turns the endpoint off
            data["metrics_port"] = None
        top = _build(_TopLevel, data, "")
        config = cls(cameras=cameras, safety=dict(safety), **built, **dataclasses.asdict(top))
        config.validate()
        return config

    def validate(self) -> None:
        """Check values against each other; raise :class:`ConfigError` naming the first bad one."""
        c, s, sch = self.control, self.server, self.scheduler
        _positive("control.rate_hz", c.rate_hz)
        if c.rate_hz > MAX_RATE_HZ:
            raise ConfigError(
                f"control.rate_hz is {c.rate_hz:g}, must be <= {MAX_RATE_HZ:g} (no arm this agent drives takes "
                "commands faster: the Franka's own control loop runs at 1 kHz)",
                field="control.rate_hz",
            )
        _choice("control.blend", c.blend, BLEND_MODES)
        _choice("control.interpolation", c.interpolation, INTERPOLATIONS)
        if c.crossfade_steps < 1:
            raise ConfigError(
                f"control.crossfade_steps is {c.crossfade_steps}, must be >= 1",
                field="control.crossfade_steps",
            )
        if c.ensemble_decay < 0:
            raise ConfigError(
                f"control.ensemble_decay is {c.ensemble_decay}, must be >= 0", field="control.ensemble_decay"
            )
        for name in ("ruckig_translation", "ruckig_rotation", "ruckig_joint", "ruckig_gripper"):
            value = getattr(c, name)
            if len(value) != 3 or not all(math.isfinite(v) and v > 0 for v in value):
                raise ConfigError(
                    f"control.{name} is {list(value)}, must be three positive numbers (velocity, acceleration, jerk)",
                    field=f"control.{name}",
                )
        _address("server.address", s.address)
        if (s.tls_cert is None) != (s.tls_key is None):
            missing = "server.tls_key" if s.tls_key is None else "server.tls_cert"
            raise ConfigError(
                f"{missing} is not set: a client certificate needs both tls_cert and tls_key", field=missing
            )
        tls_on = s.tls or s.tls_ca is not None
        for name in ("tls_cert", "tls_server_name"):
            if getattr(s, name) is not None and not tls_on:
                raise ConfigError(
                    f"server.{name} is set but TLS is off: set server.tls_ca (or server.tls = true)",
                    field=f"server.{name}",
                )
        _positive("server.request_timeout_ms", s.request_timeout_ms)
        if s.request_timeout_ms > _UINT32_MAX:  # PredictRequest.timeout_ms is a uint32
            raise ConfigError(
                f"server.request_timeout_ms is {s.request_timeout_ms}, expected at most {_UINT32_MAX} "
                "(the wire's uint32)",
                field="server.request_timeout_ms",
            )
        _positive("server.connect_timeout_s", s.connect_timeout_s)
        if s.connect_timeout_s > _GRPC_TIMEOUT_MAX_S:
            raise ConfigError(
                f"server.connect_timeout_s is {s.connect_timeout_s:g}, expected at most {_GRPC_TIMEOUT_MAX_S:g} "
                "(a gRPC deadline)",
                field="server.connect_timeout_s",
            )
        _positive("server.backoff_initial_s", s.backoff_initial_s)
        if s.backoff_factor < 1:
            raise ConfigError(
                f"server.backoff_factor is {s.backoff_factor}, must be >= 1", field="server.backoff_factor"
            )
        if s.backoff_max_s < s.backoff_initial_s:
            raise ConfigError(
                f"server.backoff_max_s is {s.backoff_max_s}, below server.backoff_initial_s {s.backoff_initial_s}",
                field="server.backoff_max_s",
            )
        if not 0 <= s.backoff_jitter < 1:
            raise ConfigError(
                f"server.backoff_jitter is {s.backoff_jitter}, must be in [0, 1)",
                field="server.backoff_jitter",
            )
        if not 1 <= s.jpeg_quality <= 100:
            raise ConfigError(
                f"server.jpeg_quality is {s.jpeg_quality}, must be in 1..100", field="server.jpeg_quality"
            )
        for name in ("inject_latency_ms", "inject_jitter_ms"):
            if getattr(s, name) < 0:
                raise ConfigError(
                    f"server.{name} is {getattr(s, name)}, must be >= 0", field=f"server.{name}"
                )
        if not 0 < sch.rtt_quantile <= 1:
            raise ConfigError(
                f"scheduler.rtt_quantile is {sch.rtt_quantile}, must be in (0, 1]",
                field="scheduler.rtt_quantile",
            )
        if sch.rtt_window < 1:
            raise ConfigError(
                f"scheduler.rtt_window is {sch.rtt_window}, must be >= 1", field="scheduler.rtt_window"
            )
        if sch.rtt_ignore_first < 0:
            raise ConfigError(
                f"scheduler.rtt_ignore_first is {sch.rtt_ignore_first}, must be >= 0",
                field="scheduler.rtt_ignore_first",
            )
        _positive("scheduler.rtt_initial_s", sch.rtt_initial_s)
        if sch.margin_s < 0:
            raise ConfigError(
                f"scheduler.margin_s is {sch.margin_s}, must be >= 0", field="scheduler.margin_s"
            )
        if not 0 < sch.execution_horizon <= 1:
            raise ConfigError(
                f"scheduler.execution_horizon is {sch.execution_horizon}, must be in (0, 1]",
                field="scheduler.execution_horizon",
            )
        for name in ("rtt_std_factor", "rtt_prior_std_s"):
            if getattr(sch, name) < 0:
                raise ConfigError(
                    f"scheduler.{name} is {getattr(sch, name)}, must be >= 0", field=f"scheduler.{name}"
                )
        if c.max_state_age_s is not None:
            _positive("control.max_state_age_s", c.max_state_age_s)
        if c.max_consecutive_faults < 1:
            raise ConfigError(
                f"control.max_consecutive_faults is {c.max_consecutive_faults}, must be >= 1",
                field="control.max_consecutive_faults",
            )
        if sch.replan_interval_s < 0:
            raise ConfigError(
                f"scheduler.replan_interval_s is {sch.replan_interval_s}, must be >= 0",
                field="scheduler.replan_interval_s",
            )
        _positive("robot.connect_timeout_s", self.robot.connect_timeout_s)
        for name, cam in self.cameras.items():
            _positive(f"cameras.{name}.width", cam.width)
            _positive(f"cameras.{name}.height", cam.height)
            _positive(f"cameras.{name}.fps", cam.fps)
            if cam.max_age_ms is not None:
                _positive(f"cameras.{name}.max_age_ms", cam.max_age_ms)
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

    def camera_for(self, name: str, height: int, width: int) -> CameraConfig:
        """The config of camera ``name``: the configured one, or a ``default_camera`` of that size."""
        if name in self.cameras:
            return self.cameras[name]
        return CameraConfig(name=name, kind=self.default_camera, width=width, height=height)


@dataclass(frozen=True)
class _TopLevel:
    instruction: str = ""
    duration_s: float | None = None
    metrics_port: int | None = 9101
    metrics_host: str = "0.0.0.0"
    default_camera: str = "sim"


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{key}: {part} is not a table", field=key)
    node[parts[-1]] = value


def _build(cls: type, raw: Mapping[str, Any], prefix: str) -> Any:
    """Instantiate dataclass ``cls`` from ``raw``, rejecting unknown keys and wrong types."""
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        where = f"{prefix}.{key}" if prefix else key
        if key not in fields:
            raise ConfigError(f"{where}: unknown key (known: {', '.join(sorted(fields))})", field=where)
        kwargs[key] = _coerce(value, hints[key], where)
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where} is {value!r}", field=where)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} is {value!r}, expected a number", field=where)
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{where} is {value!r}, expected a finite number", field=where)
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} is {value!r}, expected an integer", field=where)
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} is {value!r}, expected true or false", field=where)
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} is {value!r}, expected a string", field=where)
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ConfigError(f"{where} is {value!r}, expected {len(args)} values", field=where)
        return tuple(_coerce(v, a, where) for v, a in zip(value, args, strict=True))
    if origin is Mapping or hint is Mapping:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} is {value!r}, expected a table", field=where)
        return dict(value)
    return value


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


def _choice(where: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{where} is {value!r}, expected one of {', '.join(choices)}", field=where)

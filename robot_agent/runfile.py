"""Run files: how ``robot-agent estop`` finds a running agent, proves it is one, and sees the latch.

A PID alone proves nothing: ``robot-agent estop --pid`` used to send SIGUSR1 to whatever process
had that number, and SIGUSR1's default action kills it (a mistyped PID could kill the inference
server while the operator believed the arm latched). So each agent writes a run file once its
signal handlers are installed, ``<run dir>/robot-agent-<pid>.json``::

    {"version": 1, "pid": 4242, "started_at": "2026-11-30T14:33:03Z",
     "process_start": "123456", "cmdline": ["python", "-m", "robot_agent", ...],
     "server": "127.0.0.1:50051", "robot": "franka", "robot_ip": "172.16.0.2",
     "state": "running", "estop_reason": null, "updated_at": "2026-11-30T14:33:04Z"}

``state`` is one of :data:`RUN_STATES`: ``running`` (SIGUSR1 latches the e-stop), ``estopped``
(latched, with ``estop_reason``; the run is ending) or ``stopped`` (a controlled stop is under
way). A clean exit removes the file; a run ended by an e-stop leaves it saying ``estopped``, so
the ``estop`` command can confirm the latch even when the agent has already exited.

A run file is believed only while its process is the one that wrote it: alive, not a zombie,
with the same start time (``/proc/PID/stat`` field 22, clock ticks since boot, see proc(5); or
``ps -o lstart`` where there is no ``/proc``) and the same command line. Otherwise the file is
stale (a dead PID, or a PID reused by another process), ignored and pruned at the next start.

Where: ``$XDG_RUNTIME_DIR/vla-deploy`` (per user, on tmpfs, per the XDG Base Directory spec),
else ``<tempdir>/vla-deploy-<uid>``; ``--run-dir`` overrides both. The directory must belong to
this user and be writable by nobody else, since its files decide which process gets a signal.
Writes are atomic (a temporary file in the same directory, then ``os.replace``).

The same files tell ``robot-agent`` and ``robot-agent check`` that an arm is already driven by a
live agent (:func:`runs_driving`): connecting to it would start a second controller (Franka) or
switch its mode (xArm) under the running one.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import stat
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from robot_agent.errors import RunFileError

__all__ = [
    "RUN_STATES",
    "ProcessIdentity",
    "RunFile",
    "RunRecord",
    "default_run_dir",
    "find_run",
    "live_runs",
    "looks_like_agent",
    "process_identity",
    "prune_stale",
    "read_run",
    "run_file_path",
    "runs_driving",
    "stale_reason",
]

RunState = Literal["running", "estopped", "stopped"]
#: The states a run file can say, in the order a run goes through them.
RUN_STATES: tuple[RunState, ...] = ("running", "estopped", "stopped")
_VERSION = 1
_PREFIX = "robot-agent-"


@dataclass(frozen=True)
class ProcessIdentity:
    """What tells one process from a later one with the same PID.

    ``start``: on Linux the start time in clock ticks since boot (``/proc/PID/stat`` field 22,
    proc(5)); elsewhere ``ps -o lstart``. ``cmdline``: the process's arguments.
    """

    start: str
    cmdline: tuple[str, ...]


@dataclass(frozen=True)
class RunRecord:
    """One run file as read back; ``path`` is where it was read from."""

    path: Path
    pid: int
    started_at: str
    identity: ProcessIdentity
    server: str
    robot: str
    robot_ip: str | None
    state: RunState
    estop_reason: str | None

    def describe(self) -> str:
        """``4242 (robot franka at 172.16.0.2, server 127.0.0.1:50051, started 2026-11-30T14:33:03Z)``."""
        where = f" at {self.robot_ip}" if self.robot_ip else ""
        return f"{self.pid} (robot {self.robot}{where}, server {self.server}, started {self.started_at})"


def default_run_dir(environ: Mapping[str, str]) -> Path:
    """``$XDG_RUNTIME_DIR/vla-deploy`` when set (and absolute), else ``<tempdir>/vla-deploy-<uid>``.
    ``environ`` is handed in: only ``cli.py`` reads the environment."""
    runtime = environ.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isabs(runtime):
        return Path(runtime) / "vla-deploy"
    return Path(tempfile.gettempdir()) / f"vla-deploy-{os.getuid()}"


def run_file_path(run_dir: Path, pid: int) -> Path:
    return run_dir / f"{_PREFIX}{pid}.json"


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _check_dir(run_dir: Path) -> None:
    """Raise :class:`RunFileError` unless ``run_dir`` is a directory of this user that nobody
    else can write to (its files decide which process an e-stop signals)."""
    try:
        st = run_dir.stat()
    except OSError as exc:
        raise RunFileError(f"run dir {run_dir}: {exc.strerror}", path=run_dir) from exc
    if not stat.S_ISDIR(st.st_mode):
        raise RunFileError(f"run dir {run_dir} is not a directory", path=run_dir)
    if st.st_uid != os.getuid():
        raise RunFileError(
            f"run dir {run_dir} belongs to uid {st.st_uid}, not {os.getuid()}; pass --run-dir", path=run_dir
        )
    if st.st_mode & 0o022:
        raise RunFileError(
            f"run dir {run_dir} is writable by others (mode {stat.S_IMODE(st.st_mode):o}); pass --run-dir",
            path=run_dir,
        )


def process_identity(pid: int) -> ProcessIdentity | None:
    """The identity of process ``pid``, or None when there is none (or only a zombie)."""
    proc = Path("/proc")
    if proc.is_dir():
        try:
            stat_text = (proc / str(pid) / "stat").read_text()
            raw_cmdline = (proc / str(pid) / "cmdline").read_bytes()
        except OSError:  # gone (or going) while we read
            return None
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'.
        fields = stat_text[stat_text.rfind(")") + 2 :].split()
        if len(fields) < 20 or fields[0] in ("Z", "X"):  # a zombie or dead process handles no signal
            return None
        cmdline = tuple(arg.decode(errors="replace") for arg in raw_cmdline.split(b"\0") if arg)
        return ProcessIdentity(start=fields[19], cmdline=cmdline)  # field 22 (proc(5)), 0-based 19 here
    try:  # pragma: no cover - systems without /proc (macOS)
        out = subprocess.run(
            ["ps", "-o", "lstart=", "-o", "command=", "-p", str(pid)],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):  # pragma: no cover
        return None
    if not out:  # pragma: no cover
        return None
    return ProcessIdentity(start=out[:24], cmdline=tuple(out[24:].split()))  # pragma: no cover


def looks_like_agent(cmdline: tuple[str, ...]) -> bool:
    """Whether a command line runs the agent (``robot-agent ...`` or ``python -m robot_agent ...``);
    used only to word a refusal, never to decide to signal."""
    if any(os.path.basename(arg) == "robot-agent" for arg in cmdline):
        return True
    return any(a == "-m" and b == "robot_agent" for a, b in itertools.pairwise(cmdline))


class RunFile:
    """The run file of this process, written by the agent (the ``estop`` side only reads).

    Example::

        run_file = RunFile.for_this_process(run_dir, server="127.0.0.1:50051", robot="franka", robot_ip="172.16.0.2")
        run_file.write("running")      # after the SIGUSR1 handler is installed
        run_file.write("estopped", "operator signal SIGUSR1")
        run_file.remove()              # at a clean exit

    Raises :class:`RunFileError` when the directory is unsafe or a write fails.
    """

    def __init__(
        self,
        path: Path,
        *,
        pid: int,
        identity: ProcessIdentity,
        server: str,
        robot: str,
        robot_ip: str | None = None,
    ) -> None:
        self.path = path
        self.pid = pid
        self._identity = identity
        self._server = server
        self._robot = robot
        self._robot_ip = robot_ip
        self._started_at = _utc_now()

    @classmethod
    def for_this_process(
        cls, run_dir: Path, *, server: str, robot: str, robot_ip: str | None = None
    ) -> RunFile:
        """The run file of ``os.getpid()`` in ``run_dir`` (created 0700 if missing, then checked);
        stale files of dead or reused PIDs there are removed."""
        try:
            run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise RunFileError(f"run dir {run_dir}: cannot create it: {exc.strerror}", path=run_dir) from exc
        _check_dir(run_dir)
        prune_stale(run_dir)
        pid = os.getpid()
        identity = process_identity(pid)
        if identity is None:  # pragma: no cover - we are alive
            raise RunFileError(f"cannot read the identity of this process {pid}")
        return cls(
            run_file_path(run_dir, pid),
            pid=pid,
            identity=identity,
            server=server,
            robot=robot,
            robot_ip=robot_ip,
        )

    def write(self, state: RunState, estop_reason: str | None = None) -> None:
        """Atomically replace the file with ``state`` (blocking: call it off the event loop)."""
        content = {
            "version": _VERSION,
            "pid": self.pid,
            "started_at": self._started_at,
            "process_start": self._identity.start,
            "cmdline": list(self._identity.cmdline),
            "server": self._server,
            "robot": self._robot,
            "robot_ip": self._robot_ip,
            "state": state,
            "estop_reason": estop_reason,
            "updated_at": _utc_now(),
        }
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(content, f, indent=2)
                    f.write("\n")
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            raise RunFileError(f"run file {self.path}: cannot write it: {exc}", path=self.path) from exc

    def remove(self) -> None:
        """Remove the file (a clean exit); a file already gone is fine."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def read_run(path: Path) -> RunRecord:
    """The run file at ``path``; :class:`RunFileError` if it cannot be read or is not one.
    ``FileNotFoundError`` passes through (a clean exit removes the file)."""
    try:
        data: Any = json.loads(path.read_text())
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise RunFileError(f"run file {path}: cannot read it: {exc}", path=path) from exc
    try:
        if data["version"] != _VERSION or data["state"] not in RUN_STATES:
            raise ValueError(f"version {data['version']!r}, state {data['state']!r}")
        reason, ip = data["estop_reason"], data["robot_ip"]
        return RunRecord(
            path=path,
            pid=int(data["pid"]),
            started_at=str(data["started_at"]),
            identity=ProcessIdentity(str(data["process_start"]), tuple(str(a) for a in data["cmdline"])),
            server=str(data["server"]),
            robot=str(data["robot"]),
            robot_ip=None if ip is None else str(ip),
            state=data["state"],
            estop_reason=None if reason is None else str(reason),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise RunFileError(f"run file {path} is not a robot-agent run file: {exc}", path=path) from exc


def stale_reason(record: RunRecord) -> str | None:
    """None while the process that wrote ``record`` still runs; else why the file is stale."""
    now = process_identity(record.pid)
    if now is None:
        return f"process {record.pid} is gone"
    if now != record.identity:
        return (
            f"process {record.pid} is now {' '.join(now.cmdline) or '?'!r}, not the robot-agent that wrote it"
        )
    return None


def find_run(run_dir: Path, pid: int) -> RunRecord | None:
    """The run file of ``pid`` in ``run_dir`` (checked safe), stale or not; None if there is none."""
    _check_dir(run_dir)
    path = run_file_path(run_dir, pid)
    try:
        record = read_run(path)
    except FileNotFoundError:
        return None
    if record.pid != pid:
        raise RunFileError(f"run file {path} names pid {record.pid}, not {pid}", path=path)
    return record


def _records(run_dir: Path) -> list[RunRecord]:
    records = []
    for path in sorted(run_dir.glob(f"{_PREFIX}*.json")):
        with contextlib.suppress(FileNotFoundError, RunFileError):
            records.append(read_run(path))
    return records


def live_runs(run_dir: Path) -> list[RunRecord]:
    """The run files in ``run_dir`` whose agents still run (any state), by PID. A missing
    directory has none; an unsafe one raises :class:`RunFileError`."""
    if not run_dir.exists():
        return []
    _check_dir(run_dir)
    return sorted((r for r in _records(run_dir) if stale_reason(r) is None), key=lambda r: r.pid)


def prune_stale(run_dir: Path) -> list[Path]:
    """Remove the stale run files in ``run_dir`` (dead or reused PIDs); return their paths."""
    removed = []
    for record in _records(run_dir):
        if stale_reason(record) is not None:
            with contextlib.suppress(FileNotFoundError):
                record.path.unlink()
                removed.append(record.path)
    return removed


def runs_driving(run_dir: Path, robot: str, robot_ip: str | None) -> list[RunRecord]:
    """The live runs in ``run_dir`` (other than this process) driving the arm ``robot`` at
    ``robot_ip``. Simulated arms (``sim``) are each their own, so they never collide."""
    if robot == "sim":
        return []
    return [
        r for r in live_runs(run_dir) if r.pid != os.getpid() and (r.robot, r.robot_ip) == (robot, robot_ip)
    ]

"""A loopback TCP proxy that injects network faults between the robot agent and the inference
server, switchable at run time: a fixed delay, jitter, a bandwidth cap, periodic burst stalls, a
partition that keeps both sockets open, and connection resets; plus :func:`frozen`, which
freezes a process with SIGSTOP and resumes it with SIGCONT.

From tests (``tests/faultproxy.py`` re-exports this module)::

    async with FaultProxy("127.0.0.1", server_port) as proxy:
        agent = Agent(agent_config(proxy.port))   # the agent dials the proxy
        proxy.set_delay(0.05, jitter_s=0.01)
        proxy.partition(); ...; proxy.heal()
        proxy.reset()                              # RST both sides of every connection

From the command line (faults switched by lines on stdin: ``delay MS [JITTER_MS]``,
``bandwidth BYTES_PER_S|off``, ``stall EVERY_S FOR_S|off``, ``partition``, ``heal``, ``reset``,
``clear``)::

    python bench/faultproxy.py --upstream 127.0.0.1:50051 --listen 127.0.0.1:50052 --delay-ms 20

Loopback only: the proxy refuses to listen on, or forward to, any other address, so it can never
put faults on a real robot network by mistake. Bytes are forwarded in order in each direction;
the delay of a piece is ``delay_s + uniform(-jitter_s, jitter_s)`` (at least 0), never letting a
later piece overtake an earlier one (TCP cannot reorder).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import os
import random
import signal
import socket
import sys
import time
from collections.abc import Iterator

__all__ = ["FaultProxy", "frozen"]

logger = logging.getLogger(__name__)

_READ_SIZE = 64 * 1024


def _loopback(host: str, what: str) -> None:
    try:
        ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"faultproxy: {what} {host!r} is not a loopback address (127.0.0.0/8, ::1)")


class _Link:
    """One proxied connection: the client's and the server's streams and their two pumps."""

    def __init__(
        self,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        server: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.client, self.server = client, server
        self.tasks: list[asyncio.Task[None]] = []

    def abort(self) -> None:
        """Close both sockets at once with a TCP RST (SO_LINGER 0), dropping anything queued."""
        for _, writer in (self.client, self.server):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            writer.transport.abort()
        for task in self.tasks:
            task.cancel()


class FaultProxy:
    """Forward ``host:port`` (``port`` 0: any free one, see :attr:`port`) to
    ``upstream_host:upstream_port``, both on loopback, with faults set by the methods below.

    Every setter takes effect for bytes forwarded after the call, on connections already open
    and on new ones. Raises ``ValueError`` for a non-loopback address or a negative figure.
    """

    def __init__(
        self, upstream_host: str, upstream_port: int, *, host: str = "127.0.0.1", port: int = 0, seed: int = 0
    ) -> None:
        _loopback(upstream_host, "upstream")
        _loopback(host, "listen address")
        self.upstream = (upstream_host, upstream_port)
        self.host, self._port = host, port
        self._random = random.Random(seed)
        self.delay_s = 0.0
        self.jitter_s = 0.0
        self.bandwidth_bytes_per_s: float | None = None
        self.stall_every_s: float | None = None
        self.stall_for_s = 0.0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._stall_epoch = time.monotonic()
        #: Connections accepted, connections reset by :meth:`reset`, bytes forwarded each way.
        self.accepted = 0
        self.resets = 0
        self.bytes_up = 0
        self.bytes_down = 0

    # --- lifecycle --------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The port the proxy listens on (known after :meth:`start`)."""
        if self._server is not None:
            return int(self._server.sockets[0].getsockname()[1])
        return self._port

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self._port)

    async def close(self) -> None:
        """Stop listening and reset every open connection."""
        if self._server is not None:
            self._server.close()
        self.reset()
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    # --- faults -----------------------------------------------------------------------------------
    def set_delay(self, delay_s: float, jitter_s: float = 0.0) -> None:
        """Hold each piece ``delay_s`` +- ``jitter_s`` seconds (uniform) before forwarding it."""
        if delay_s < 0 or jitter_s < 0:
            raise ValueError(f"faultproxy: delay {delay_s} s and jitter {jitter_s} s must be >= 0")
        self.delay_s, self.jitter_s = delay_s, jitter_s

    def set_bandwidth(self, bytes_per_s: float | None) -> None:
        """Cap each direction of each connection at ``bytes_per_s`` (``None``: no cap)."""
        if bytes_per_s is not None and bytes_per_s <= 0:
            raise ValueError(f"faultproxy: bandwidth {bytes_per_s} B/s must be > 0 (None: no cap)")
        self.bandwidth_bytes_per_s = bytes_per_s

    def set_stalls(self, every_s: float | None, for_s: float = 0.0) -> None:
        """Packet-burst stalls: in every ``every_s`` window, forward nothing for the first
        ``for_s`` seconds, then the held bytes in one burst (``None``: no stalls)."""
        if every_s is not None and not (0 < for_s < every_s):
            raise ValueError(f"faultproxy: a stall of {for_s} s every {every_s} s needs 0 < for_s < every_s")
        self.stall_every_s, self.stall_for_s = every_s, for_s
        self._stall_epoch = time.monotonic()

    def partition(self) -> None:
        """Stop forwarding both ways; the sockets stay open (a pulled cable, not a closed port)."""
        self._flowing.clear()

    def heal(self) -> None:
        """End a :meth:`partition`: what was held back is forwarded, in order."""
        self._flowing.set()

    @property
    def partitioned(self) -> bool:
        return not self._flowing.is_set()

    def reset(self) -> int:
        """Abort every open connection (RST to both sides); return how many. New ones are accepted."""
        links = list(self._links)
        for link in links:
            link.abort()
        self._links.clear()
        self.resets += len(links)
        return len(links)

    def clear(self) -> None:
        """No delay, no jitter, no cap, no stalls, no partition."""
        self.set_delay(0.0)
        self.set_bandwidth(None)
        self.set_stalls(None)
        self.heal()

    @property
    def connections(self) -> int:
        """Connections open through the proxy now."""
        return len(self._links)

    # --- forwarding -------------------------------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()  # as if the server's port were closed
            return
        self.accepted += 1
        link = _Link((reader, writer), upstream)
        self._links.add(link)
        link.tasks = [
            asyncio.create_task(self._pump(reader, upstream[1], up=True)),
            asyncio.create_task(self._pump(upstream[0], writer, up=False)),
        ]
        try:
            await asyncio.wait(link.tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # One side closed: close the other (a clean FIN, unless reset() got there first).
            for task in link.tasks:
                task.cancel()
            for w in (writer, upstream[1]):
                w.close()
            self._links.discard(link)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, up: bool) -> None:
        """Read pieces as they come, stamp each with its release time, write them in order."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def read() -> None:
            last = 0.0
            while data := await reader.read(_READ_SIZE):
                delay = self.delay_s
                if self.jitter_s:
                    delay += self._random.uniform(-self.jitter_s, self.jitter_s)
                last = max(last, time.monotonic() + max(0.0, delay))
                queue.put_nowait((last, data))
            queue.put_nowait((0.0, b""))

        reading = asyncio.create_task(read())
        try:
            while True:
                release, data = await queue.get()
                if not data:
                    return
                await asyncio.sleep(max(0.0, release - time.monotonic()))
                await self._gate()
                writer.write(data)
                await writer.drain()
                if up:
                    self.bytes_up += len(data)
                else:
                    self.bytes_down += len(data)
                if self.bandwidth_bytes_per_s is not None:
                    await asyncio.sleep(len(data) / self.bandwidth_bytes_per_s)
        except (ConnectionError, OSError):
            return
        finally:
            reading.cancel()

    async def _gate(self) -> None:
        """Wait out a partition and the stall window the present moment falls in."""
        while True:
            await self._flowing.wait()
            every = self.stall_every_s
            if every is None:
                return
            into = (time.monotonic() - self._stall_epoch) % every
            if into >= self.stall_for_s:
                return
            await asyncio.sleep(self.stall_for_s - into)


@contextlib.contextmanager
def frozen(pid: int) -> Iterator[None]:
    """Freeze process ``pid`` (SIGSTOP) for the ``with`` block, then resume it (SIGCONT), also
    when the block raises. Its sockets stay open and the kernel keeps accepting connections into
    its backlog, so peers see a server that answers nothing: neither refused nor reset."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


# --- command line ---------------------------------------------------------------------------------
def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def _command(proxy: FaultProxy, line: str) -> str:
    words = line.split()
    if not words:
        return ""
    name, args = words[0], words[1:]
    if name == "delay":
        proxy.set_delay(float(args[0]) / 1000, float(args[1]) / 1000 if len(args) > 1 else 0.0)
    elif name == "bandwidth":
        proxy.set_bandwidth(None if args[0] == "off" else float(args[0]))
    elif name == "stall":
        proxy.set_stalls(None) if args[0] == "off" else proxy.set_stalls(float(args[0]), float(args[1]))
    elif name == "partition":
        proxy.partition()
    elif name == "heal":
        proxy.heal()
    elif name == "reset":
        return f"reset {proxy.reset()} connection(s)"
    elif name == "clear":
        proxy.clear()
    else:
        raise ValueError(f"unknown command {name!r}: delay, bandwidth, stall, partition, heal, reset, clear")
    return f"ok: {line.strip()}"


async def _main(args: argparse.Namespace) -> None:
    up_host, up_port = _address(args.upstream)
    host, port = _address(args.listen)
    proxy = FaultProxy(up_host, up_port, host=host, port=port, seed=args.seed)
    proxy.set_delay(args.delay_ms / 1000, args.jitter_ms / 1000)
    proxy.set_bandwidth(args.bandwidth)
    if args.stall_every_s is not None:
        proxy.set_stalls(args.stall_every_s, args.stall_s)
    async with proxy:
        print(f"faultproxy: {host}:{proxy.port} -> {up_host}:{up_port}", flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := (await reader.readline()).decode():
            try:
                print(_command(proxy, line), flush=True)
            except (ValueError, IndexError) as exc:
                print(f"error: {exc}", flush=True)
        if args.stay:
            await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--upstream", required=True, help="HOST:PORT to forward to, loopback only")
    parser.add_argument(
        "--listen", default="127.0.0.1:0", help="HOST:PORT to listen on (default: %(default)s)"
    )
    parser.add_argument("--delay-ms", type=float, default=0.0, help="fixed delay (default: %(default)s)")
    parser.add_argument(
        "--jitter-ms", type=float, default=0.0, help="+- uniform jitter (default: %(default)s)"
    )
    parser.add_argument("--bandwidth", type=float, default=None, help="cap in bytes/s (default: none)")
    parser.add_argument("--stall-every-s", type=float, default=None, help="stall period (default: none)")
    parser.add_argument("--stall-s", type=float, default=0.5, help="stall length (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="jitter seed (default: %(default)s)")
    parser.add_argument(
        "--stay", action="store_true", help="keep forwarding after stdin closes (default: stop)"
    )
    args = parser.parse_args(argv)
    try:
        asyncio.run(_main(args))
    except KeyboardInterrupt:
        pass
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

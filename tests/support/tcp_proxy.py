"""A loopback TCP proxy the test controls: one replica reaches PostgreSQL through it, so the
test can cut that replica off while the others keep their direct connections.

``partition()`` stops moving bytes in both directions but keeps every socket open, as a
dropped route or a silent firewall does: the client's queries hang rather than fail, the hard
case (a refused connection is the easy one). New connections are accepted and left hanging
too. ``heal()`` moves the bytes held up meanwhile, so what the cut-off replica sent late
reaches the database late, which is what the fence is for.

It runs its own event loop on a thread, so a synchronous test drives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading


class TcpProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.connections = 0
        self._flowing = threading.Event()
        self._flowing.set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._resumed: asyncio.Event | None = None

    def start(self) -> TcpProxy:
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    async def _start(self) -> int:
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    def partition(self) -> None:
        assert self._resumed is not None
        self._flowing.clear()
        self._loop.call_soon_threadsafe(self._resumed.clear)

    def heal(self) -> None:
        assert self._resumed is not None
        self._flowing.set()
        self._loop.call_soon_threadsafe(self._resumed.set)

    @property
    def partitioned(self) -> bool:
        return not self._flowing.is_set()

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._resumed is not None
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            await self._resumed.wait()  # a connection made during the partition hangs, as SYNs would
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
            await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in (writer, upstream_writer):
                if w is not None:
                    w.close()
            self._tasks.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._resumed is not None
        while True:
            data = await reader.read(65536)
            if not data:
                writer.close()
                return
            await self._resumed.wait()  # held here while partitioned, delivered at heal()
            writer.write(data)
            await writer.drain()

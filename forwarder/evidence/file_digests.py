"""Digests of a file sink's directory (docs/evidence.md).

A digest lists, once, every rotated (closed) file not listed before, with the SHA-256 of its
uncompressed content; and every file still being appended to as ``open``, with the length and
SHA-256 of its content so far (the next digest lists it again, longer, until it is rotated and
listed closed). What a digest covers is therefore everything the sink wrote before it, whatever
was rotated when. The scan runs under the sink's write lock, so no rotation or write is half
seen; closed files already listed are known from the digests themselves (read once at start).
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import os
import re
import threading
from datetime import datetime
from pathlib import Path

import structlog

from forwarder.evidence import digest
from forwarder.evidence.keys import load_private
from forwarder.evidence.lines import link_of
from forwarder.evidence.settings import EvidenceSettings

log = structlog.get_logger("forwarder.evidence")
ROTATED = re.compile(r".*\.\d{8}T\d{6}Z(?:\.\d+)?(?:\.gz)?")


def data_root(path_template: str) -> Path:
    """The directory above the first placeholder of the sink's path template."""
    parts = Path(path_template).parent.parts
    return Path(*parts[: next((i for i, p in enumerate(parts) if "{" in p), len(parts))] or ".")


def digest_dir(path_template: str, settings: EvidenceSettings) -> Path:
    return Path(settings.digest_directory) if settings.digest_directory else data_root(path_template) / "_digests"


def data_files(root: Path, digests: Path) -> list[Path]:
    out = []
    for directory, dirs, names in os.walk(root):
        here = Path(directory)
        dirs[:] = [d for d in dirs if (here / d).resolve() != digests.resolve()]
        out += [here / n for n in names if not n.endswith(".partial") and not n.startswith(".")]
    return sorted(out)


def identity(path: Path) -> str:
    """A rotated file is named without its ``.gz``: it is listed under one name, compressed or not."""
    return str(path)[:-3] if path.name.endswith(".gz") else str(path)


def read_content(path: Path, limit: int | None = None) -> bytes:
    if path.name.endswith(".gz"):
        with gzip.open(path, "rb") as handle:
            return handle.read()
    with path.open("rb") as handle:
        return handle.read() if limit is None else handle.read(limit)


def listing(location: str, content: bytes, state: str) -> digest.Listing:
    out = digest.Listing(location, hashlib.sha256(content).hexdigest(), len(content), state=state)
    for line in content.split(b"\n"):
        try:
            found = link_of(line)
        except (ValueError, IndexError):
            continue  # a line cut by a crash, ended by the sink: listed by its bytes, not as an event
        if found is not None:
            out.add_event(found.stream, found.seq, found.prev, found.hash, found.time)
    return out


class FileDigests:
    def __init__(self, sink: str, path_template: str, settings: EvidenceSettings, lock: threading.Lock) -> None:
        self.sink = sink
        self.settings = settings
        self.root = data_root(path_template)
        self.directory = digest_dir(path_template, settings)
        self.lock = lock
        self.key = load_private(settings.signing_key_file)
        self._listed: set[str] | None = None
        self._previous: tuple[str, bytes, datetime] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """A last digest at shutdown: what was written since the last one is covered now."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
            try:
                await asyncio.to_thread(self.write)
            except Exception as exc:  # the next start's first digest covers it
                log.error("cannot write the last digest; the next start writes it", sink=self.sink, error=str(exc))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.digest_interval_s)
            try:
                await asyncio.to_thread(self.write)
            except Exception as exc:  # a full disk, a damaged digest: logged, tried again, the sink carries on
                log.error("cannot write a digest; tried again next interval", sink=self.sink, error=str(exc))

    def _load(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._listed = set()
        names = sorted(p for p in self.directory.iterdir() if digest.NAME.fullmatch(p.name))
        for path in names:
            body, _ = digest.parse(path.read_bytes())
            self._listed |= {o["location"] for o in body["objects"] if o.get("state") == "closed"}
        if names:
            data = names[-1].read_bytes()
            body, _ = digest.parse(data)
            end = datetime.fromisoformat(body["to"].replace("Z", "+00:00"))
            self._previous = (names[-1].name, data, end)

    def write(self) -> Path:
        with self.lock:
            if self._listed is None:
                self._load()
            assert self._listed is not None
            now = digest.interval_end(None if self._previous is None else self._previous[2])
            listings = []
            for path in data_files(self.root, self.directory):
                location = str(path.relative_to(self.root))
                if ROTATED.fullmatch(path.name):
                    name = str(Path(identity(path)).relative_to(self.root))
                    if name not in self._listed:
                        listings.append(listing(name, read_content(path), "closed"))
                else:
                    listings.append(listing(location, read_content(path), "open"))
            previous = None
            start = now
            if self._previous is not None:
                previous = digest.previous_of(self._previous[0], self._previous[1])
                start = self._previous[2]
            data = digest.build(sink=self.sink, kind="file", start=start, end=now, listings=listings,
                                previous=previous, key=self.key)  # fmt: skip
            target = self.directory / digest.digest_name(now)
            partial = target.with_name(target.name + ".partial")
            with partial.open("wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            partial.rename(target)
            self._listed |= {x.location for x in listings if x.state == "closed"}
            self._previous = (target.name, data, now)
            return target

"""Digests of a file sink's directory (docs/evidence.md).

A digest lists, once, every rotated (closed) file not listed before, with the SHA-256 of its
uncompressed content; and every file still being appended to as ``open``, with the length and
SHA-256 of its content so far (the next digest lists it again, longer, until it is rotated and
listed closed). What a digest covers is therefore everything the sink wrote before it, whatever
was rotated when. The scan runs under the sink's write lock, so no rotation or write is half
seen; closed files already listed are known from the digests themselves (read once at start,
and again when a replica gains the sink's lease: ``DigestWriter._refresh``). The scan lists
whatever is in the directory, whoever wrote it, so a replica taking over a shared directory
needs nothing more to cover its predecessor's last files.
"""

from __future__ import annotations

import gzip
import os
import re
import threading
from pathlib import Path

from forwarder.evidence import digest
from forwarder.evidence.digest_writer import DigestWriter, listing_of
from forwarder.evidence.settings import EvidenceSettings

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


class FileDigests(DigestWriter):
    kind = "file"

    def __init__(
        self,
        sink: str,
        path_template: str,
        settings: EvidenceSettings,
        lock: threading.Lock,
        mode: int = 0o640,
        directory_mode: int = 0o750,
    ) -> None:
        """``mode`` and ``directory_mode`` are the sink's (``mode``): a digest directory that
        others may write in (umask 000) would let them delete the proof."""
        super().__init__(sink, settings)
        self.mode = mode
        self.directory_mode = directory_mode
        self.root = data_root(path_template)
        self.directory = digest_dir(path_template, settings)
        self.lock = lock
        self._listed: set[str] | None = None

    def _load(self) -> None:
        missing = [d for d in (self.directory, *self.directory.parents) if not d.is_dir()][::-1]
        for d in missing:
            d.mkdir(mode=self.directory_mode, exist_ok=True)
            os.chmod(d, self.directory_mode)  # whatever the umask, as the sink's own directories
        self._listed = set()
        names = sorted(p for p in self.directory.iterdir() if digest.NAME.fullmatch(p.name))
        for path in names:
            body, _ = digest.parse(path.read_bytes())
            self._listed |= {o["location"] for o in body["objects"] if o.get("state") == "closed"}
        if names:
            self._chain_to(names[-1].name, names[-1].read_bytes())

    def _refresh(self) -> None:
        with self.lock:
            newest = self._previous[0] if self._previous is not None else None
            if not self._stale and self.directory.is_dir():
                self._stale = any(
                    digest.NAME.fullmatch(p.name) and (newest is None or p.name > newest)
                    for p in self.directory.iterdir()
                )
            if self._stale:
                self._listed, self._previous = None, None  # read again by ``write``
                self._stale = False

    def write(self) -> Path:
        with self.lock:
            if self._listed is None:
                self._load()
            assert self._listed is not None
            now = self._end()
            listings = []
            for path in data_files(self.root, self.directory):
                location = str(path.relative_to(self.root))
                if ROTATED.fullmatch(path.name):
                    name = str(Path(identity(path)).relative_to(self.root))
                    if name not in self._listed:
                        listings.append(listing_of(name, read_content(path), "closed"))
                else:
                    listings.append(listing_of(location, read_content(path), "open"))
            data = self._signed(listings, now)
            target = self.directory / digest.digest_name(now)
            partial = target.with_name(target.name + ".partial")
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, self.mode)
            os.fchmod(fd, self.mode)  # the umask took bits away, or gave none
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            partial.rename(target)
            self._listed |= {x.location for x in listings if x.state == "closed"}
            self._chain_to(target.name, data, now)
            return target

"""``sinks.base.gzip_compress`` and ``gzip_file``: ISA-L at level 1, zlib above; every reader gets plain gzip."""

from __future__ import annotations

import gzip
import stat
from pathlib import Path

import orjson
import pytest

from sinks.base import gzip_compress, gzip_file

BATCH = b"".join(
    orjson.dumps({"id": f"codacy:{i:064x}", "action": "organizations.people.add", "raw": {"n": i}}) + b"\n"
    for i in range(2_000)
)


@pytest.mark.parametrize("level", range(1, 10))
def test_every_level_is_plain_gzip_and_the_same_bytes_each_time(level: int) -> None:
    body = gzip_compress(BATCH, level)
    assert gzip.decompress(body) == BATCH
    assert body == gzip_compress(BATCH, level)  # S3 retries rely on it
    assert body[4:8] == b"\0\0\0\0"  # mtime 0: no wall time in the bytes


def test_level_1_compresses_like_zlib_level_1_and_higher_levels_compress_more() -> None:
    isal_size, zlib_size = len(gzip_compress(BATCH, 1)), len(gzip.compress(BATCH, 1, mtime=0))
    assert isal_size <= zlib_size * 1.1
    assert len(gzip_compress(BATCH, 9)) < isal_size


def test_an_empty_body_is_still_a_gzip_member() -> None:
    assert gzip.decompress(gzip_compress(b"", 1)) == b""


@pytest.mark.parametrize("level", [1, 2, 9])
def test_gzip_file_streams_a_file_into_plain_gzip_with_the_given_mode(tmp_path: Path, level: int) -> None:
    source = tmp_path / "rotated"
    source.write_bytes(BATCH * 20)  # several of copyfileobj's 1 MiB reads
    target = tmp_path / "rotated.gz"
    gzip_file(source, target, level, mode=0o640)
    assert gzip.decompress(target.read_bytes()) == BATCH * 20
    assert stat.S_IMODE(target.stat().st_mode) == 0o640

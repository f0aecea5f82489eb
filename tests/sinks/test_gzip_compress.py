"""``sinks.base.gzip_compress``: ISA-L at level 1, zlib above; every receiver reads plain gzip."""

from __future__ import annotations

import gzip

import orjson
import pytest

from sinks.base import gzip_compress

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

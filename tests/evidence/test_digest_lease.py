"""A digest writer and the sink's lease (docs/high-availability.md): two file sinks on one
directory stand for two replicas; only the one told it holds the lease writes, and one that
gains it chains to the newest digest in the store, so ``verify files`` finds one chain."""

from __future__ import annotations

import asyncio
from pathlib import Path

from forwarder.evidence.keys import generate
from forwarder.record import record_of
from sinks.file import FileSink
from sinks.file_config import FileSinkConfig
from tests.evidence.test_file_digests import kinds, verify
from tests.evidence.test_verify_events import chained


def test_only_the_holder_writes_and_a_new_holder_continues_the_chain(tmp_path: Path) -> None:
    private, public = tmp_path / "evidence.key", tmp_path / "evidence.pub"
    generate(private, public)
    out = tmp_path / "out"
    config = FileSinkConfig.model_validate(
        {"type": "file", "path": str(out / "{organization}.ndjson"), "evidence": {"signing_key_file": str(private)}}
    )
    records = [record_of(e, i) for i, e in enumerate(chained(12), 1)]
    holder = {"a": True, "b": False}

    async def run() -> None:
        a, b = FileSink("archive", config), FileSink("archive", config)
        assert a.digests is not None and b.digests is not None
        a.digests.owns, b.digests.owns = (lambda: holder["a"]), (lambda: holder["b"])
        await a.start()
        await b.start()
        await a.send(records[:4])
        assert await asyncio.to_thread(a.digests._write_if_holding) is not None
        assert await asyncio.to_thread(b.digests._write_if_holding) is None  # not the holder: nothing written
        holder.update(a=False, b=True)  # b takes the sink over
        await b.send(records[4:8])
        await asyncio.to_thread(b.digests._write_if_holding)
        assert await asyncio.to_thread(a.digests._write_if_holding) is None
        holder.update(a=True, b=False)  # and a takes it back: it chains to b's digest, not its own
        await a.send(records[8:])
        await a.close()  # the last digest, the lease still held
        await b.close()  # not the holder: no last digest

    asyncio.run(run())
    assert len(list((out / "_digests").iterdir())) == 3
    code, report = verify(out, public)
    assert (code, kinds(report), report["pending"]) == (0, [], [])
    assert list(report["streams"].values()) == [{"first": 1, "last": 12}]

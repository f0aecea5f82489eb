"""Promise 1 for the Security Lake sink: SIGKILLs mid-run, then every object read back.

One run in test_crash.py's style: the four vendor emulators gain entries while the daemon lives
(seeded, 0.3 to 1.5 s) and is killed, batches going out as they fill (the sink lets a small batch
wait five minutes, so they fill by count here). After a final clean ``once``, every object in moto's
bucket is read with pyarrow and checked (tests/support/security_lake_objects.py: layout, codec, page
and row-group sizes, time order, one class per object, every row valid against the official OCSF
1.1.0 schema); every entry of every vendor is there, and none is stored twice.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.support.config import make_config
from tests.support.daemon import cli, start
from tests.support.emulators import EmulatorProcess
from tests.support.moto_server import MotoServer
from tests.support.receivers import AWS_ENV
from tests.support.security_lake_objects import read_lake
from tests.support.vendors import VENDORS, expected_ids

pytestmark = pytest.mark.integration

KILLS = 12
SEED = 20261206
BUCKET = "aws-security-data-lake-us-east-1-test"
ACCOUNT = "123456789012"
SOURCE = "af-{class}"


@pytest.fixture
def moto() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


def s3(moto: MotoServer) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=moto.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
    )


@pytest.mark.timeout(600)
def test_sigkills_mid_run_lose_nothing_and_store_nothing_twice(
    tmp_path: Path, vendor_emulators: dict[str, EmulatorProcess], moto: MotoServer
) -> None:
    s3(moto).create_bucket(Bucket=BUCKET)
    sources = {name: VENDORS[name].source(emulator.url) for name, emulator in vendor_emulators.items()}
    sink = {
        "type": "security_lake",
        "bucket": BUCKET,
        "endpoint_url": moto.endpoint_url,
        "force_path_style": True,
        "region": "us-east-1",
        "account_id": ACCOUNT,
        "source_name": SOURCE,
        "batch_max_events": 20,
    }
    cfg = make_config(tmp_path, sources, {"lake": sink})
    rng = random.Random(SEED)
    unexpected_exits = []
    life = 0
    # At least KILLS lives, and on a loaded machine more, until objects were written mid-run.
    while life < KILLS or (life < 4 * KILLS and not s3(moto).list_objects_v2(Bucket=BUCKET).get("KeyCount")):
        life += 1
        for name, emulator in vendor_emulators.items():
            emulator.control("POST", "entries", {"generate": rng.randint(1, 8), "span_s": 5, **VENDORS[name].generate})
        daemon = start(cfg, "run", env=AWS_ENV)
        time.sleep(rng.uniform(0.3, 1.5))
        if daemon.poll() is not None:
            unexpected_exits.append((life, daemon.returncode, daemon.stderr.read() if daemon.stderr else b""))
        else:
            os.kill(daemon.pid, signal.SIGKILL)
        daemon.wait(timeout=30)
        if daemon.stderr:
            daemon.stderr.close()
    during = s3(moto).list_objects_v2(Bucket=BUCKET).get("KeyCount", 0)
    assert during > 0, "no object was written while the daemon was being killed: the kills tested nothing"
    final = cli(cfg, "once", "--timeout", "150", timeout=240, env=AWS_ENV)
    assert final.returncode == 0, final.stderr[-3000:]
    assert not unexpected_exits, f"daemon exited on its own: {unexpected_exits[:2]!r}"

    documents = read_lake(s3(moto), BUCKET, SOURCE, "us-east-1", ACCOUNT)
    stored = Counter(doc["metadata"]["uid"] for doc in documents)
    for name, emulator in vendor_emulators.items():
        missing = expected_ids(emulator, name) - set(stored)
        assert not missing, f"{len(missing)} {name} events lost"
    twice = {uid: n for uid, n in stored.items() if n > 1}
    assert not twice, f"stored more than once: {list(twice)[:5]}"
    days = {doc["time"] // 86_400_000 for doc in documents}
    assert len(days) > 1  # the entries span event days, and objects were split by them
    print(f"\nsecurity lake crash: {KILLS} SIGKILLs, {during} objects before the last run, {len(documents)} events")

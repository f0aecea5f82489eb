"""Slices sized to the vendor's last answers (``forwarder.sources.answer_size``): a Codacy backlog
whose configured slice holds many thousand entries is walked in answers of about
``answer_entries``, every entry once, the cursor at the walk's end."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from forwarder.emulators.base import start_in_thread
from forwarder.emulators.codacy import CodacyEmulator
from forwarder.sources.answer_size import MIN_MS, START_FRACTION, SliceSizer, occupied_ms
from forwarder.sources.codacy import CodacyConfig, CodacySource

HOUR = 3_600_000
DAY = 24 * HOUR


def test_a_walk_without_a_remembered_width_starts_narrow() -> None:
    assert SliceSizer(2_000, DAY).width == DAY // START_FRACTION
    assert SliceSizer(2_000, DAY, remembered=5 * HOUR).width == 5 * HOUR
    assert SliceSizer(2_000, 30_000).width == 30_000  # a configured slice below the floor stays as set


def test_a_dense_answer_narrows_the_next_slice_to_the_aim() -> None:
    sizer = SliceSizer(2_000, DAY, remembered=DAY)
    assert sizer.answered(33_000, DAY) == DAY * 2_000 // 33_000
    assert sizer.answered(10_000_000, sizer.width) == MIN_MS  # never below a minute


def test_a_sparse_answer_widens_at_most_twofold_and_never_past_the_configured_slice() -> None:
    sizer = SliceSizer(2_000, DAY, remembered=HOUR)
    assert sizer.answered(1, HOUR) == 2 * HOUR
    assert sizer.answered(0, 2 * HOUR) == 4 * HOUR
    for _ in range(10):
        sizer.answered(0, sizer.width)
    assert sizer.width == DAY


def test_a_slice_cut_short_by_the_walk_end_judges_the_density_over_its_own_width() -> None:
    sizer = SliceSizer(2_000, DAY, remembered=4 * HOUR)
    assert sizer.answered(1_000, HOUR) == 2 * HOUR  # 1,000 an hour: the aim is two hours
    sizer = SliceSizer(2_000, DAY, remembered=4 * HOUR)
    assert sizer.answered(1, 60_000) == 8 * HOUR  # sparse: twofold, not the short slice's width times two


def test_the_density_is_judged_over_the_span_the_new_entries_occupy() -> None:
    assert occupied_ms(0, DAY, DAY - HOUR) == HOUR  # a backlog that begins in the slice's last hour
    assert occupied_ms(0, DAY, None) == DAY  # no new entry: the whole slice
    assert occupied_ms(0, DAY, -HOUR) == DAY  # an entry before the slice (a server ignoring the filter)
    assert occupied_ms(0, DAY, DAY) == MIN_MS  # a burst at one instant: as if spread over a minute
    assert occupied_ms(0, 30_000, 30_000) == 30_000  # never more than the slice itself
    sizer = SliceSizer(2_000, DAY, remembered=DAY)
    assert sizer.answered(1_000, occupied_ms(0, DAY, DAY - HOUR)) == 2 * HOUR  # not the whole day's 48,000


@pytest.fixture
def codacy() -> Iterator[tuple[CodacyEmulator, str]]:
    emulator = CodacyEmulator()
    emulator.requests_per_window = 1 << 30
    server, url = start_in_thread(emulator)
    yield emulator, str(url)
    server.shutdown()


class Walked:
    """Every page of one Codacy walk from an empty cursor: the answers' sizes, the keys, the last cursor."""

    def __init__(self, source: CodacySource) -> None:
        self.source = source
        self.answers: list[int] = []
        self.keys: list[str] = []
        self.cursor: dict[str, Any] | None = None

    @classmethod
    async def of(cls, emulator: CodacyEmulator, url: str, lookback_days: float, slice_hours: float) -> Walked:
        config = CodacyConfig(
            type="codacy",
            base_url=f"{url}/api/v3",
            api_token=emulator.token,
            organizations=["gh/acme"],
            initial_lookback_days=lookback_days,
            lag_s=60,
            slice_hours=slice_hours,
            max_attempts=1,
        )
        walked = cls(CodacySource("codacy", config))
        try:
            async for page in walked.source.pages("gh/acme", None):
                walked.answers.append(len(page.entries))
                walked.keys += [key for _, key in page.entries]
                walked.cursor = page.cursor
        finally:
            await walked.source.close()
        return walked


@pytest.mark.integration
async def test_a_backlog_denser_than_the_aim_is_walked_in_small_answers_every_entry_once(
    codacy: tuple[CodacyEmulator, str],
) -> None:
    emulator, url = codacy
    now = int(time.time() * 1000)
    emulator.generate(12_000, orgs=["gh/acme"], span_s=86_400, end_ms=now - 120_000)
    walked = await Walked.of(emulator, url, lookback_days=1.1, slice_hours=24)
    assert len(walked.keys) == len(set(walked.keys)) == 12_000  # each entry once: nothing lost, nothing twice
    aim = CodacySource.answer_entries
    assert aim is not None and max(walked.answers) <= aim * 3 // 2  # the configured 24 h slice would hold all 12,000
    assert walked.cursor is not None and walked.cursor["watermark_ms"] >= now - 61_000
    assert walked.source.slice_widths["gh/acme"] < DAY  # the next poll starts from the width the density asks for


@pytest.mark.integration
async def test_a_backlog_that_begins_inside_a_slice_is_not_read_in_one_answer(
    codacy: tuple[CodacyEmulator, str],
) -> None:
    """The empty hours before the backlog doubled the width to the configured 3 h (4 h of entries
    hold 12,000): the slice where the entries begin holds about 1,000 of them in its last minutes.
    Judged over the whole slice, that looked sparse and the next answer held 8,000 entries at once
    (the 10,000-entry answer of the 1,000,000-event benchmark, docs/performance.md round 11)."""
    emulator, url = codacy
    now = int(time.time() * 1000)
    emulator.generate(12_000, orgs=["gh/acme"], span_s=7_200, end_ms=now - 120_000)
    walked = await Walked.of(emulator, url, lookback_days=0.125, slice_hours=3)
    assert len(walked.keys) == len(set(walked.keys)) == 12_000  # each entry once: nothing lost, nothing twice
    aim = CodacySource.answer_entries
    assert aim is not None and max(walked.answers) <= aim * 3 // 2, walked.answers

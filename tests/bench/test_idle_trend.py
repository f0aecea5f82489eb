"""``bench.idle.rss_trend``: the idle figure tells a one-off settling from steady growth."""

from __future__ import annotations

import pytest

from bench.idle import rss_trend


def test_settling_grows_in_the_first_half_only() -> None:
    # +2 MB in steps over the first polls, then flat for the rest of the ten minutes
    samples = [(float(t), 65.0 + min(t // 60, 2)) for t in range(601)]

    trend = rss_trend(samples)

    assert trend["rss_mb_mid"] == 67.0
    assert trend["rss_growth_first_half_mb"] == 2.0
    assert trend["rss_growth_second_half_mb"] == 0.0
    assert trend["rss_slope_mb_per_hour_second_half"] == 0.0


def test_a_leak_shows_as_a_slope_in_the_second_half() -> None:
    # 0.2 MB a poll, a poll a minute, for the whole window: 12 MB an hour
    samples = [(float(t), 65.0 + 0.2 * (t // 60)) for t in range(601)]

    trend = rss_trend(samples)

    assert trend["rss_growth_first_half_mb"] == pytest.approx(1.0)
    assert trend["rss_growth_second_half_mb"] == pytest.approx(1.0)
    slope = trend["rss_slope_mb_per_hour_second_half"]
    assert slope is not None and 10 < slope < 14


def test_too_few_samples_have_no_slope() -> None:
    trend = rss_trend([(0.0, 60.0), (1.0, 61.0)])

    assert trend["rss_growth_first_half_mb"] == 1.0 and trend["rss_growth_second_half_mb"] == 0.0
    assert trend["rss_slope_mb_per_hour_second_half"] is None

"""Solar position (NREL SPA) against the published worked example and the 2025 March equinox."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from citytwin.errors import ValidationError
from citytwin.simulate.sun import solar_position

# Reda & Andreas, NREL/TP-560-34302 (2008), Table A5.1: 17 October 2003, 12:30:30 at UTC−7,
# Golden, Colorado; ΔT 67 s, 1830.14 m, 820 hPa, 11 °C.
SPA_EXAMPLE = pd.Timestamp("2003-10-17 12:30:30", tz="Etc/GMT+7")
SPA_SITE = {"lat": 39.742476, "lon": -105.1786}
SPA_OPTIONS = {"elevation": 1830.14, "pressure": 820.0, "temperature": 11.0, "delta_t": 67.0}
SPA_ZENITH, SPA_AZIMUTH = 50.11162, 194.34024

# Seoul City Hall; the 2025 March equinox was at 09:01 UTC on 20 March (USNO, KASI almanacs).
SEOUL = {"lat": 37.5665, "lon": 126.9780}
EQUINOX = pd.Timestamp("2025-03-20 09:01", tz="UTC")


def test_reproduces_the_spa_worked_example_to_1e4_degree() -> None:
    sun = solar_position(SPA_EXAMPLE, **SPA_SITE, **SPA_OPTIONS).iloc[0]
    assert sun["zenith"] == pytest.approx(SPA_ZENITH, abs=1e-4)
    assert sun["azimuth"] == pytest.approx(SPA_AZIMUTH, abs=1e-4)
    assert sun["elevation"] == pytest.approx(90 - SPA_ZENITH, abs=1e-4)


def test_the_time_zone_of_the_input_does_not_matter() -> None:
    as_utc = SPA_EXAMPLE.tz_convert("UTC")
    as_seoul = SPA_EXAMPLE.tz_convert("Asia/Seoul")
    frame = solar_position([as_utc, as_seoul], **SPA_SITE, **SPA_OPTIONS)
    assert frame["zenith"].to_numpy() == pytest.approx([SPA_ZENITH] * 2, abs=1e-4)


def test_a_vector_of_times_matches_one_call_per_time() -> None:
    times = pd.date_range("2025-12-21 07:00", "2025-12-21 18:00", freq="37min", tz="Asia/Seoul")
    together = solar_position(times, **SEOUL)
    apart = pd.concat([solar_position(moment, **SEOUL) for moment in times])
    np.testing.assert_allclose(together.to_numpy(), apart.to_numpy(), atol=1e-9)
    assert list(together.index) == list(times)


def test_seoul_noon_at_the_march_equinox_stands_at_90_minus_the_latitude() -> None:
    # Independent check: at the equinox the declination is 0 and changes by
    # sin(23.44°)·360°/365.2422 = 0.3924° a day; refraction at 52° is Bennett's 0.0128°.
    day = pd.date_range("2025-03-20 11:30", "2025-03-20 13:30", freq="1min", tz="Asia/Seoul")
    sun = solar_position(day, **SEOUL)
    top = int(np.argmax(sun["elevation"].to_numpy()))
    noon, elevation, azimuth = day[top], sun["elevation"].iloc[top], sun["azimuth"].iloc[top]
    declination = (noon - EQUINOX) / pd.Timedelta(days=1) * 0.3924
    expected = 90 - SEOUL["lat"] + declination + 0.0128
    assert elevation == pytest.approx(expected, abs=0.01)
    assert azimuth == pytest.approx(180, abs=0.3)  # a minute is 0.25° of azimuth
    # local apparent noon: 12:00 + (135° − 126.978°)·4 min + 7.5 min (equation of time −7.5 min)
    assert noon.strftime("%H:%M") in {"12:39", "12:40"}


@pytest.mark.parametrize(
    ("start", "published", "rising"),
    [
        # KASI (한국천문연구원) as announced on 18 Dec 2023: Seoul sunset 31 Dec 2023 at 17:23,
        # sunrise 1 Jan 2024 at 07:47, for sea level, upper limb on the horizon.
        ("2024-01-01 07:30", "2024-01-01 07:47", True),
        ("2023-12-31 17:05", "2023-12-31 17:23", False),
    ],
)
def test_seoul_sunrise_and_sunset_match_the_kasi_almanac(
    start: str, published: str, rising: bool
) -> None:
    # KASI's convention: geometric centre 50′ below the horizon (34′ refraction + 16′ radius);
    # a vanishing pressure switches the model's own refraction off.
    times = pd.date_range(start, periods=30 * 60, freq="1s", tz="Asia/Seoul")
    elevation = solar_position(times, **SEOUL, pressure=1e-9)["elevation"].to_numpy()
    up = elevation > -50 / 60
    crossing = times[int(np.argmax(up if rising else ~up))]
    assert abs(crossing - pd.Timestamp(published, tz="Asia/Seoul")) <= pd.Timedelta(seconds=60)


def test_azimuth_is_clockwise_from_north() -> None:
    times = pd.DatetimeIndex(
        [
            pd.Timestamp("2025-06-21 08:00", tz="Asia/Seoul"),
            pd.Timestamp("2025-06-21 17:00", tz="Asia/Seoul"),
        ]
    )
    morning, evening = solar_position(times, **SEOUL)["azimuth"]
    assert 45 < morning < 135  # east
    assert 225 < evening < 315  # west


def test_refraction_lifts_the_sun_only_above_the_horizon() -> None:
    night = solar_position(pd.Timestamp("2025-12-21 00:00", tz="Asia/Seoul"), **SEOUL).iloc[0]
    assert night["elevation"] < -50  # midnight in winter: 90 − 37.6 − 23.4 below the horizon
    assert night["zenith"] + night["elevation"] == pytest.approx(90)


def test_times_without_a_time_zone_are_refused() -> None:
    with pytest.raises(ValidationError, match="time zone"):
        solar_position(pd.DatetimeIndex([datetime(2025, 12, 21, 12)]), **SEOUL)
    aware = pd.Timestamp("2025-12-21 12:00", tz="Asia/Seoul")
    with pytest.raises(ValidationError, match=r"positions \[1\] have no time zone"):
        solar_position([aware, datetime(2025, 12, 21, 12)], **SEOUL)


def test_an_observer_off_the_globe_is_refused_with_every_problem() -> None:
    when = pd.Timestamp("2025-12-21 12:00", tz="Asia/Seoul")
    with pytest.raises(ValidationError, match=r"lat 95.*lon -200.*pressure 0"):
        solar_position(when, 95.0, -200.0, pressure=0.0)

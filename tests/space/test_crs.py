"""CRS: known coordinates pin the axis order (EPSG:5186 is northing-first; we are always x, y)."""

from __future__ import annotations

import pytest

from citytwin.space.crs import in_korea, looks_like_lonlat, to_city, to_wgs84


def test_seoul_city_hall_in_epsg_5186() -> None:
    x, y = to_city(126.9780, 37.5665)
    assert (float(x), float(y)) == pytest.approx((198056.4, 551885.0), abs=0.5)


def test_round_trip_and_no_axis_swap() -> None:
    lon, lat = to_wgs84(*to_city([126.9780, 127.1], [37.5665, 37.51]))
    assert lon.tolist() == pytest.approx([126.9780, 127.1], abs=1e-9)
    assert lat.tolist() == pytest.approx([37.5665, 37.51], abs=1e-9)
    # the classic swapped-axis bug would put Seoul at about 130.8 E, 34.3 N
    assert in_korea(lon, lat).all()
    assert not in_korea([37.5665], [126.978]).any()


def test_epsg_5179_is_handled_the_same_way() -> None:
    x, y = to_city(126.9780, 37.5665, "EPSG:5179")
    lon, lat = to_wgs84(x, y, "EPSG:5179")
    assert 900_000 < float(x) < 1_000_000  # UTM-K eastings of Seoul are about 953,000 m
    assert 1_900_000 < float(y) < 2_000_000
    assert (float(lon), float(lat)) == pytest.approx((126.9780, 37.5665), abs=1e-9)


def test_lonlat_detection() -> None:
    assert looks_like_lonlat((126.7, 37.4, 127.2, 37.7))
    assert not looks_like_lonlat((190000, 540000, 210000, 560000))

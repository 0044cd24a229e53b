"""The vocabulary covers every S-DoT and KMA variable with a UCUM unit, a URI and a valid range."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from citytwin.errors import ValidationError
from citytwin.ingest.sdot import HOURLY, RAW_2020
from citytwin.model import PROPERTIES, get_property

KMA_KEYS = [
    "air_temperature",
    "precipitation",
    "wind_speed",
    "wind_direction",
    "relative_humidity",
    "vapour_pressure",
    "dew_point_temperature",
    "air_pressure",
    "sea_level_pressure",
    "sunshine_duration",
    "solar_radiation",
    "snow_depth",
    "cloud_cover",
    "visibility",
    "ground_temperature",
]


def test_every_sdot_column_has_a_property(shared_data: Path) -> None:
    with (shared_data / "sdot" / "sensor_data_information.csv").open(encoding="utf-8") as f:
        names = [row[0] for row in csv.reader(f)][1:]
    value_columns = [n for n in names if n not in ("모델명", "시리얼", "측정시간")]
    assert sorted(value_columns) == sorted(RAW_2020)
    for key in {k for k, _ in RAW_2020.values()} | set(HOURLY.values()):
        assert get_property(key).key == key
    assert {"no2", "co", "so2", "nh3", "h2s", "o3", "visitor_count"} <= set(HOURLY.values())


@pytest.mark.parametrize("spec", PROPERTIES, ids=lambda s: s.key)
def test_each_property_is_complete(spec: object) -> None:
    from citytwin.model import PropertySpec

    assert isinstance(spec, PropertySpec)
    assert spec.definition.startswith("https://")
    assert spec.unit.ucum
    assert spec.unit.to_sta().definition.startswith("http://www.opengis.net")
    assert spec.valid_min < spec.valid_max
    assert spec.name_ko


def test_kma_variables_and_units() -> None:
    for key in KMA_KEYS:
        get_property(key)
    assert get_property("air_temperature").unit.ucum == "Cel"
    assert get_property("pm25").unit.ucum == "ug/m3"
    assert get_property("noise").unit.ucum == "dB[SPL]"
    assert len({p.key for p in PROPERTIES}) == len(PROPERTIES)


def test_unknown_property_lists_known_ones() -> None:
    with pytest.raises(ValidationError, match=r"known: .*pm25"):
        get_property("pm3")

"""The live city emulator: diurnal cycles, episodes, and actuators whose effects are measurable.

Effects are judged against the same city (same seed) without the task: every reading is a pure
function of seed, time, episodes and effects, so the ratio of the two is the effect itself.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from citytwin.emulator.effects import (
    SPRAY_PM10_FRACTION,
    SPRAY_PM25_FRACTION,
    SPRAY_TAU_MINUTES,
    LiveTraffic,
    grid_traffic,
)
from citytwin.emulator.live import LiveCity, LiveSensor
from citytwin.emulator.processes import KST, diurnal, mixing, traffic
from citytwin.errors import ValidationError
from citytwin.model.vocabulary import property_keys
from citytwin.mqtt.messages import DeviceReading, parse_message
from citytwin.simulate.assignment import assign, load_tntp_case
from citytwin.simulate.assignment_whatif import with_capacity
from citytwin.space.binding import bind_to_districts
from citytwin.space.democity import build_demo_city

DAY = datetime(2026, 4, 14, tzinfo=KST)
T0 = DAY + timedelta(hours=9)


@pytest.fixture(scope="module")
def demo() -> LiveCity:
    return LiveCity.demo(seed=5, sensors=240)


def fresh(city: LiveCity, **options: object) -> LiveCity:
    """A new city on the same sensors and seed (actuators change state)."""
    return LiveCity(city.sensors, seed=city.seed, **options)  # type: ignore[arg-type]


def busiest_dong(city: LiveCity) -> str:
    return str(Counter(city.dong_codes.tolist()).most_common(1)[0][0])


def pm(city: LiveCity, at: datetime, key: str = "pm25") -> np.ndarray:
    return np.array([m["values"][key] for m in city.step(at)])


def test_demo_sensors_carry_their_district(demo: LiveCity) -> None:
    city = build_demo_city(seed=5, buildings=480, sensors=240)
    bound = bind_to_districts(
        city.sensor_sites.lon, city.sensor_sites.lat, city.districts, crs=city.crs
    )
    assert len(demo.sensors) == int((~bound.outside).sum()) >= 235
    dong_names = dict(zip(city.districts["code"], city.districts["name"], strict=True))
    for sensor in demo.sensors:
        assert sensor.dong_code.startswith(sensor.gu_code)
        assert len(sensor.dong_code) == 7
        assert dong_names[sensor.dong_code] == sensor.dong
        assert dong_names[sensor.gu_code] == sensor.gu


def test_messages_are_valid_device_messages(demo: LiveCity) -> None:
    messages = demo.step(T0)
    assert len(messages) == len(demo.sensors)
    for message in messages[:20]:
        reading = parse_message(json.dumps(message).encode())
        assert isinstance(reading, DeviceReading), reading
        assert reading.time_us == int((T0.timestamp()) * 1_000_000)
        assert set(reading.values) == {"pm25", "pm10", "air_temperature", "relative_humidity",
                                       "noise"}  # fmt: skip
        assert set(reading.values) <= set(property_keys())
        assert reading.properties is not None
        assert {"gu_code", "dong_code", "dong", "gu"} <= set(reading.properties)
    links = demo.link_speeds(T0)
    assert len(links) == 48  # a 4 x 4 two-way grid: 2 * 2 * 4 * 3 links
    assert all(isinstance(parse_message(json.dumps(m).encode()), DeviceReading) for m in links)


def test_same_seed_same_readings(demo: LiveCity) -> None:
    assert fresh(demo).step(T0) == demo.step(T0)
    other = LiveCity(demo.sensors, seed=demo.seed + 1)
    assert not np.array_equal(pm(other, T0), pm(demo, T0))


def test_pm_follows_traffic_over_mixing(demo: LiveCity) -> None:
    city = fresh(demo, weather=False)
    hours = np.array([4.0, 8.0, 14.0, 19.0])
    means = np.array([pm(city, DAY + timedelta(hours=float(h))).mean() for h in hours])
    expected = 0.4 + 0.6 * traffic(hours) / mixing(hours)
    np.testing.assert_allclose(means / means[0], expected / expected[0], rtol=0.03)
    assert means[1] > 1.8 * means[0]
    assert means[3] > means[2] > means[0]


def test_temperature_follows_the_diurnal_curve(demo: LiveCity) -> None:
    city = fresh(demo, weather=False)
    at = [DAY + timedelta(hours=5.5), DAY + timedelta(hours=14.5)]
    t_min, t_max = (pm(city, moment, "air_temperature").mean() for moment in at)
    amplitude = 4.0 * float(np.ptp(diurnal(np.array([5.5, 14.5]))))
    assert t_max - t_min == pytest.approx(amplitude, abs=0.2)
    humidity = pm(city, at[0], "relative_humidity")
    assert humidity.min() >= 5
    assert humidity.max() <= 100


def test_episode_raises_only_its_dong(demo: LiveCity) -> None:
    dong = busiest_dong(demo)
    city, base = fresh(demo), fresh(demo)
    city.raise_pm(dong, start=T0, duration=timedelta(hours=1), add=60.0)
    inside = demo.dong_codes == dong
    during = pm(city, T0 + timedelta(minutes=30)) - pm(base, T0 + timedelta(minutes=30))
    np.testing.assert_allclose(during[inside], 60.0, atol=0.11)
    assert np.all(during[~inside] == 0)
    for outside_episode in (T0 - timedelta(minutes=2), T0 + timedelta(hours=1)):
        assert np.array_equal(pm(city, outside_episode), pm(base, outside_episode))


def test_raise_pm_refuses_an_unknown_dong(demo: LiveCity) -> None:
    with pytest.raises(ValidationError, match="no sensor in dong '0000000'"):
        fresh(demo).raise_pm("0000000", start=T0, duration=timedelta(hours=1))


def spray_task(dong: str, key: str = "spray-1") -> dict[str, object]:
    return {"task_id": f"t-{key}", "idempotency_key": key, "command": "spray", "parameters": {},
            "attempt": 1, "expires_at": None}  # fmt: skip


def test_spray_lowers_the_dong_at_once_and_recovers(demo: LiveCity) -> None:
    dong = busiest_dong(demo)
    city, base = fresh(demo), fresh(demo)
    city.raise_pm(dong, start=T0, duration=timedelta(hours=6), add=80.0)
    base.raise_pm(dong, start=T0, duration=timedelta(hours=6), add=80.0)
    ok, detail = city.apply(spray_task(dong), at=T0 + timedelta(minutes=10),
                            actuator=f"spray-truck:{dong}")  # fmt: skip
    assert ok
    assert dong in detail
    inside = demo.dong_codes == dong
    for minutes, pm25_cut in ((10, 1.0), (70, math.exp(-1.0)), (310, math.exp(-5.0))):
        at = T0 + timedelta(minutes=minutes)
        ratio = pm(city, at)[inside].mean() / pm(base, at)[inside].mean()
        assert ratio == pytest.approx(1 - SPRAY_PM25_FRACTION * pm25_cut, abs=0.003)
        assert np.array_equal(pm(city, at)[~inside], pm(base, at)[~inside])
    at = T0 + timedelta(minutes=10)
    pm10 = pm(city, at, "pm10")[inside].sum() / pm(base, at, "pm10")[inside].sum()
    assert pm10 == pytest.approx(1 - SPRAY_PM10_FRACTION, abs=0.003)
    before = T0 + timedelta(minutes=8)
    assert np.array_equal(pm(city, before), pm(base, before))
    assert SPRAY_TAU_MINUTES == 60.0


def test_apply_is_idempotent_by_key(demo: LiveCity) -> None:
    dong = busiest_dong(demo)
    city, base = fresh(demo), fresh(demo)
    actuator = f"spray-truck:{dong}"
    first = city.apply(spray_task(dong), at=T0, actuator=actuator)
    again = city.apply(spray_task(dong), at=T0 + timedelta(minutes=4), actuator=actuator)
    assert first == again
    assert first[0]
    inside = demo.dong_codes == dong
    ratio = pm(city, T0)[inside].sum() / pm(base, T0)[inside].sum()
    assert ratio == pytest.approx(1 - SPRAY_PM25_FRACTION, abs=0.003)
    city.apply(spray_task(dong, key="spray-2"), at=T0, actuator=actuator)
    ratio = pm(city, T0)[inside].sum() / pm(base, T0)[inside].sum()
    assert ratio == pytest.approx((1 - SPRAY_PM25_FRACTION) ** 2, abs=0.003)


@pytest.mark.parametrize(
    ("command", "actuator", "reason"),
    [
        ("launch", "spray-truck:{dong}", "unknown command 'launch'; expected one of: purify, "),
        ("spray", "vms:{dong}", "command 'spray' needs an actuator 'spray-truck:<id>'"),
        ("spray", "spray-truck:0000000", "no dong '0000000'"),
        ("purify", "shelter:nobody", "no sensor 'nobody'"),
        ("signal_plan", "signal:1", "the live city has no traffic model"),
    ],
)
def test_refusals_give_a_reason(demo: LiveCity, command: str, actuator: str, reason: str) -> None:
    city = LiveCity(demo.sensors, seed=demo.seed)
    dong = busiest_dong(demo)
    task = {**spray_task(dong), "command": command}
    ok, detail = city.apply(task, at=T0, actuator=actuator.format(dong=dong))
    assert not ok
    assert reason in detail
    assert city.state.reductions == []


def test_unaddressed_tasks_and_naive_times_are_refused(demo: LiveCity) -> None:
    city = fresh(demo)
    assert city.apply(spray_task("x", "k2"), at=T0) == (
        False, "no actuator id; expected e.g. 'spray-truck:<dong code>'"
    )  # fmt: skip
    with pytest.raises(ValidationError, match="has no time zone"):
        city.step(datetime(2026, 4, 14, 9))


def test_purifier_lowers_one_sensor_while_it_runs(demo: LiveCity) -> None:
    city, base = fresh(demo), fresh(demo)
    sensor = demo.sensors[3].id
    task = {"idempotency_key": "p1", "command": "purify", "parameters": {"minutes": 30}}
    assert city.apply(task, at=T0, actuator=f"shelter:{sensor}")[0]
    during = pm(city, T0 + timedelta(minutes=10)) / pm(base, T0 + timedelta(minutes=10))
    assert during[3] == pytest.approx(0.5, abs=0.01)
    assert np.all(np.delete(during, 3) == 1.0)
    assert np.array_equal(
        pm(city, T0 + timedelta(minutes=30)), pm(base, T0 + timedelta(minutes=30))
    )


def test_sign_shows_its_text(demo: LiveCity) -> None:
    city = fresh(demo)
    task = {"idempotency_key": "v1", "command": "show", "parameters": {"text": "미세먼지 주의"}}
    assert city.apply(task, at=T0, actuator="vms:gate-3") == (
        True,
        "sign gate-3 shows '미세먼지 주의'",
    )
    assert city.signs == {"gate-3": "미세먼지 주의"}
    empty = {"idempotency_key": "v2", "command": "show", "parameters": {"text": " "}}
    assert not city.apply(empty, at=T0, actuator="vms:gate-4")[0]


def speed_of(city: LiveCity, at: datetime, link: str) -> float:
    speeds = {m["properties"]["road_link"]: m["values"]["link_speed"] for m in city.link_speeds(at)}
    return float(speeds[link])


def test_signal_plan_halving_capacity_lowers_the_link_speed() -> None:
    model, lon, lat = grid_traffic((127.0, 37.5, 127.1, 37.6), seed=2)
    sensor = LiveSensor("s1", 127.05, 37.55, "99010", "9901001", "가온동")
    city = LiveCity([sensor], seed=2, traffic=model, link_lonlat=(lon, lat))
    before = {m["properties"]["road_link"]: m["values"]["link_speed"] for m in city.link_speeds(T0)}
    link = min(before, key=before.__getitem__)  # the most congested link
    a, b = link.split("-")
    task = {"idempotency_key": "s1", "command": "signal_plan",
            "parameters": {"links": [[a, b]], "factor": 0.5}}  # fmt: skip
    ok, detail = city.apply(task, at=T0 + timedelta(minutes=1), actuator=f"signal:{b}")
    assert ok, detail
    assert speed_of(city, T0, link) == before[link]  # a plan does not act before it is applied
    assert speed_of(city, T0 + timedelta(minutes=1), link) < before[link] - 1.0
    bad = {**task, "idempotency_key": "s2", "parameters": {"links": [["1", "16"]], "factor": 0.5}}
    ok, detail = city.apply(bad, at=T0, actuator="signal:1")
    assert not ok
    assert "no link 1-16" in detail


def test_signal_plan_speeds_match_an_independent_assignment(shared_data: Path) -> None:
    network, demand = load_tntp_case(shared_data / "tntp" / "SiouxFalls")
    city = LiveCity([], seed=0, traffic=LiveTraffic(network, demand * 0.5, gap=1e-5))
    at = DAY + timedelta(hours=8)  # traffic profile 1.05 at 08:00
    scale = float(traffic(np.array([8.0]))[0])
    task = {"idempotency_key": "sf", "command": "signal_plan",
            "parameters": {"links": [[10, 15]], "factor": 0.5}}  # fmt: skip
    assert city.apply(task, at=at, actuator="signal:10")[0]
    halved = with_capacity(network, [(10, 15)], factor=0.5)
    time = assign(halved, demand * 0.5 * scale, gap=1e-5).time
    expected = 50.0 * halved.free_flow_time / time
    link = int(network.find_links([(10, 15)])[0])
    assert speed_of(city, at, "10-15") == pytest.approx(expected[link], abs=0.02)
    base = LiveCity([], seed=0, traffic=LiveTraffic(network, demand * 0.5, gap=1e-5))
    assert speed_of(city, at, "10-15") < speed_of(base, at, "10-15")

"""The city traffic model on the demo city: trips from buildings, flows, a road closure.

Every check is an identity the model must satisfy whatever its parameters: trip totals from the
floor areas computed here by hand, flow conservation at every node, equilibrium gaps, and the
closed street carrying nothing.
"""

from __future__ import annotations

from typing import Any

import geopandas as gpd
import numpy as np
import pytest

from citytwin.errors import ValidationError
from citytwin.simulate.city_traffic import (
    MODELLED_CLASSES,
    RESIDENTIAL_USES,
    CityFlows,
    CityTraffic,
    city_traffic,
    compare_flows,
    furness,
    trip_table,
)
from citytwin.space.democity import build_demo_city


@pytest.fixture(scope="module")
def city() -> Any:
    return build_demo_city(seed=0, buildings=4_000, sensors=10)


@pytest.fixture(scope="module")
def dongs(city: Any) -> gpd.GeoDataFrame:
    return city.districts[city.districts["level"] == "dong"].reset_index(drop=True)


@pytest.fixture(scope="module")
def model(city: Any, dongs: gpd.GeoDataFrame) -> CityTraffic:
    return city_traffic(city.roads.links, trip_table(dongs, city.buildings))


@pytest.fixture(scope="module")
def flows(model: CityTraffic) -> CityFlows:
    return model.flows()


def test_furness_meets_both_margins() -> None:
    rng = np.random.default_rng(1)
    seed = rng.uniform(0.1, 1.0, (6, 6))
    rows = rng.uniform(10, 100, 6)
    columns = rows.sum() * rng.dirichlet(np.ones(6))
    balanced = furness(seed, rows, columns, iterations=200)
    np.testing.assert_allclose(balanced.sum(axis=1), rows, rtol=1e-9)
    np.testing.assert_allclose(balanced.sum(axis=0), columns, rtol=1e-9)


def test_trips_follow_the_residential_floor_area(city: Any, dongs: gpd.GeoDataFrame) -> None:
    buildings = city.buildings
    floors = np.maximum(1.0, np.round((buildings["height"] - buildings["min_height"]) / 3.0))
    area = buildings.geometry.area * floors
    housed = buildings["use"].isin(RESIDENTIAL_USES)
    joined = gpd.sjoin(
        gpd.GeoDataFrame(geometry=buildings.geometry.representative_point()),
        dongs[["code", "geometry"]], predicate="within",
    )  # fmt: skip
    code = joined["code"].astype(str).reindex(buildings.index)
    residents = area[housed & code.notna()].sum() / 30.0
    jobs = area[~housed & code.notna()].groupby(code).sum()

    table = trip_table(dongs, buildings, trip_rate=0.05)

    assert table.total == pytest.approx(residents * 0.05, rel=1e-6)
    assert np.all(np.diag(table.trips) == 0)
    assert list(table.zones["code"]) == list(dongs["code"].astype(str))
    # attractions: each dong's share of the non-residential floor area, of the same total
    expected = jobs.reindex(table.zones["code"]).fillna(0.0).to_numpy() / jobs.sum() * table.total
    np.testing.assert_allclose(table.zones["attractions"], expected, rtol=1e-6, atol=1e-6)


def test_flows_conserve_vehicles_and_reach_equilibrium(
    model: CityTraffic, flows: CityFlows
) -> None:
    network, volume = model.network, flows.result.volume
    nodes = len(network.node_ids)
    inflow = np.bincount(network.head, volume, minlength=nodes)
    outflow = np.bincount(network.tail, volume, minlength=nodes)
    zones = network.n_zones
    trips = model.trips.trips
    np.testing.assert_allclose(outflow[:zones] - inflow[:zones], trips.sum(1) - trips.sum(0),
                               atol=1e-6 * trips.sum())  # fmt: skip
    np.testing.assert_allclose(inflow[zones:], outflow[zones:], atol=1e-6 * trips.sum())
    assert flows.result.converged
    assert flows.result.relative_gap <= 1e-4
    # only arterial classes are modelled, and the connectors come first
    assert set(model.links["road_class"]) <= set(MODELLED_CLASSES)
    assert model.n_connectors == 2 * 3 * zones
    table = flows.table()
    np.testing.assert_allclose(table["vc"], table["volume"] / table["capacity_veh_h"])
    free = table["volume"] < 1e-9
    np.testing.assert_allclose(table.loc[free, "speed_kmh"], 50.0)  # demo arterials: 50 km/h


def test_a_closed_street_carries_nothing_and_its_traffic_moves(
    model: CityTraffic, flows: CityFlows
) -> None:
    table = flows.table()
    busiest = table.loc[table["volume"].idxmax()]
    twin = table[
        (table["from_node"] == busiest["to_node"]) & (table["to_node"] == busiest["from_node"])
    ]

    closed = model.close([busiest["link_id"]])
    after = closed.flows()
    change = compare_flows(flows, after)

    assert len(closed.links) == len(model.links) - 2  # both directions of the street
    assert set(change.loc[change["closed"], "link_id"]) == {busiest["link_id"], *twin["link_id"]}
    assert (change.loc[change["closed"], "volume_after"] == 0).all()
    # the street's vehicles use other links now: volume rises somewhere else by at least that
    rises = change.loc[~change["closed"], "volume_change"].clip(lower=0).sum()
    assert rises >= busiest["volume"] * 0.99
    assert change.attrs["vehicle_hours_base"] == pytest.approx(flows.vehicle_hours)
    assert change.attrs["vehicle_hours_variant"] == pytest.approx(after.vehicle_hours)


def test_bad_inputs_are_named(model: CityTraffic, city: Any, dongs: gpd.GeoDataFrame) -> None:
    with pytest.raises(ValidationError, match=r"unknown link.*nowhere"):
        model.close(["nowhere"])
    with pytest.raises(ValidationError, match=r"missing column.*capacity_veh_h"):
        city_traffic(city.roads.links.drop(columns="capacity_veh_h"), model.trips)
    local = city.roads.links[city.roads.links["road_class"] == "residential"]
    with pytest.raises(ValidationError, match="none of class"):
        city_traffic(local, model.trips, classes=("motorway",))
    with pytest.raises(ValidationError, match="trip_rate -1"):
        trip_table(dongs, city.buildings, trip_rate=-1)

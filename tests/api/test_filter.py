"""SensorThings API v1.1 ``$filter``: parsing, precedence, evaluation on STA entities, errors."""

from __future__ import annotations

import string
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from citytwin.api.filter import (
    Binary,
    Call,
    FilterSyntaxError,
    Literal,
    Property,
    Unary,
    compile_to_predicate,
    conjuncts,
    evaluate,
    parse_filter,
    properties,
    resolve_path,
)

OBSERVATION: dict[str, Any] = {
    "@iot.id": 1,
    "result": 23.4,
    "phenomenonTime": "2020-03-14T15:02:00Z",
    "resultTime": None,
    "resultQuality": None,
    "parameters": {"raw": 1234, "unit": "degC"},
    "Datastream": {"@iot.id": 7, "name": "V02Q1940612 temperature"},
}
# A real S-DoT sensor position (Mapo-gu), GeoJSON as the STA Location entity carries it.
LOCATION: dict[str, Any] = {
    "@iot.id": 3,
    "name": "V02Q1940612",
    "encodingType": "application/geo+json",
    "location": {"type": "Point", "coordinates": [126.8951928, 37.57807617]},
}
THING: dict[str, Any] = {
    "@iot.id": 5,
    "name": "S-DoT V02Q1940612",
    "description": "Smart Seoul urban data sensor",
    "properties": {"serial": "V02Q1940612", "district": "Mapo-gu", "installed": 2019},
}
CITY_HALL = "POINT(126.9780 37.5665)"
AROUND_CITY_HALL = "POLYGON((126.97 37.56, 126.99 37.56, 126.99 37.57, 126.97 37.57, 126.97 37.56))"
AROUND_SENSOR = "POLYGON((126.89 37.57, 126.90 37.57, 126.90 37.58, 126.89 37.58, 126.89 37.57))"


def a(name: str) -> Property:
    return Property(tuple(name.split("/")))


@pytest.mark.parametrize(
    ("text", "entity", "expected"),
    [
        # comparison
        ("result eq 23.4", OBSERVATION, True),
        ("result ne 23.4", OBSERVATION, False),
        ("result gt 20", OBSERVATION, True),
        ("result ge 23.4", OBSERVATION, True),
        ("result lt 23.4", OBSERVATION, False),
        ("result le 30", OBSERVATION, True),
        ("id eq 1", OBSERVATION, True),
        ("Datastream/id eq 7", OBSERVATION, True),
        ("Thing/properties/serial eq 'V02Q1940612'", {"Thing": THING}, True),
        ("properties/installed lt 2020", THING, True),
        # datetimes: entity strings against unquoted ISO 8601 literals, any offset
        ("phenomenonTime gt 2020-03-14T15:00:00Z", OBSERVATION, True),
        ("phenomenonTime eq 2020-03-15T00:02:00+09:00", OBSERVATION, True),
        ("phenomenonTime lt 2020-03-14T15:02:00.000Z", OBSERVATION, False),
        ("phenomenonTime ge 2020-03-14", OBSERVATION, True),
        ("phenomenonTime sub duration'PT2M' eq 2020-03-14T15:00:00Z", OBSERVATION, True),
        ("phenomenonTime add duration'P1D' gt 2020-03-15T00:00:00Z", OBSERVATION, True),
        # null semantics
        ("resultTime eq null", OBSERVATION, True),
        ("resultTime ne null", OBSERVATION, False),
        ("resultTime gt 2020-01-01T00:00:00Z", OBSERVATION, False),
        ("resultTime lt 2020-01-01T00:00:00Z", OBSERVATION, False),
        ("missing/deeper eq null", OBSERVATION, True),
        ("result add null eq null", OBSERVATION, True),
        # logical
        ("result gt 20 and result lt 30", OBSERVATION, True),
        ("result gt 30 or Datastream/id eq 7", OBSERVATION, True),
        ("not result gt 30", OBSERVATION, True),
        ("not (result gt 20 and result lt 30)", OBSERVATION, False),
        ("true and not false", OBSERVATION, True),
        # arithmetic
        ("result add 1.6 eq 25", OBSERVATION, True),
        ("result sub 3.4 eq 20", OBSERVATION, True),
        ("parameters/raw div 10 eq 123", OBSERVATION, True),
        ("parameters/raw div 10.0 eq 123.4", OBSERVATION, True),
        ("parameters/raw mod 10 eq 4", OBSERVATION, True),
        ("(parameters/raw div 10 sub 100) mul 2 eq 46", OBSERVATION, True),
        ("-result lt 0", OBSERVATION, True),
        ("parameters/raw div 0 eq null", OBSERVATION, True),
        # string
        ("substringof('Seoul', description)", THING, True),
        ("startswith(name, 'S-DoT')", THING, True),
        ("endswith(name, '612')", THING, True),
        ("length(properties/serial) eq 11", THING, True),
        ("indexof(properties/serial, 'Q') eq 3", THING, True),
        ("substring(properties/serial, 4) eq '1940612'", THING, True),
        ("substring(properties/serial, 1, 2) eq '02'", THING, True),
        ("tolower(properties/serial) eq 'v02q1940612'", THING, True),
        ("toupper(properties/district) eq 'MAPO-GU'", THING, True),
        ("trim('  x ') eq 'x'", THING, True),
        ("concat(concat(properties/district, ' '), 'Seoul') eq 'Mapo-gu Seoul'", THING, True),
        ("name eq 'O''Brien'", {"name": "O'Brien"}, True),
        ("startswith(result, 'x')", OBSERVATION, False),  # type mismatch is null, not an error
        # date
        ("year(phenomenonTime) eq 2020", OBSERVATION, True),
        ("month(phenomenonTime) eq 3", OBSERVATION, True),
        ("day(phenomenonTime) eq 14", OBSERVATION, True),
        ("hour(phenomenonTime) eq 15", OBSERVATION, True),
        ("minute(phenomenonTime) eq 2", OBSERVATION, True),
        ("second(phenomenonTime) eq 0", OBSERVATION, True),
        ("fractionalseconds(2020-03-14T15:02:00.25Z) eq 0.25", OBSERVATION, True),
        ("date(phenomenonTime) eq 2020-03-14", OBSERVATION, True),
        ("time(phenomenonTime) lt 16:00:00", OBSERVATION, True),
        ("totaloffsetminutes(2020-03-15T00:02:00+09:00) eq 540", OBSERVATION, True),
        ("phenomenonTime lt now()", OBSERVATION, True),
        ("phenomenonTime gt mindatetime() and phenomenonTime lt maxdatetime()", OBSERVATION, True),
        # math
        ("round(result) eq 23", OBSERVATION, True),
        ("round(2.5) eq 3 and round(-2.5) eq -3", OBSERVATION, True),
        ("floor(result) eq 23", OBSERVATION, True),
        ("ceiling(result) eq 24", OBSERVATION, True),
        # geospatial (planar, in degrees, as the standard's examples)
        (f"geo.distance(location, geography'{CITY_HALL}') lt 0.1", LOCATION, True),
        (f"geo.distance(location, geography'{CITY_HALL}') lt 0.08", LOCATION, False),
        (f"st_within(location, geography'{AROUND_SENSOR}')", LOCATION, True),
        (f"st_within(location, geography'{AROUND_CITY_HALL}')", LOCATION, False),
        (f"st_contains(geography'{AROUND_CITY_HALL}', geography'{CITY_HALL}')", LOCATION, True),
        (f"st_disjoint(location, geography'{AROUND_CITY_HALL}')", LOCATION, True),
        (f"geo.intersects(location, geography'{AROUND_SENSOR}')", LOCATION, True),
        (f"st_intersects(location, geography'{AROUND_CITY_HALL}')", LOCATION, False),
        ("st_equals(location, geography'POINT(126.8951928 37.57807617)')", LOCATION, True),
        (f"st_touches(geography'POINT(126.97 37.56)', geography'{AROUND_CITY_HALL}')", {}, True),
        (
            "st_overlaps(geography'POLYGON((0 0,2 0,2 2,0 2,0 0))', "
            "geography'POLYGON((1 1,3 1,3 3,1 3,1 1))')",
            {},
            True,
        ),
        ("st_crosses(geography'LINESTRING(0 0,2 2)', geography'LINESTRING(0 2,2 0)')", {}, True),
        (f"st_relate(location, geography'{AROUND_SENSOR}', 'T*F**F***')", LOCATION, True),
        ("geo.length(geography'LINESTRING(0 0,3 4)') eq 5", {}, True),
        (f"st_within(name, geography'{AROUND_SENSOR}')", LOCATION, False),
    ],
)
def test_evaluate(text: str, entity: dict[str, Any], expected: bool) -> None:
    assert compile_to_predicate(text)(entity) is expected


def test_feature_location_is_accepted() -> None:
    feature = {"location": {"type": "Feature", "geometry": LOCATION["location"]}}
    assert compile_to_predicate(f"st_within(location, geography'{AROUND_SENSOR}')")(feature)


def test_resolver_answers_paths_the_entity_does_not_hold() -> None:
    """A server follows navigation links through the resolver; the filter only asks for paths."""
    asked: list[tuple[str, ...]] = []

    def resolve(path: tuple[str, ...], entity: Mapping[str, Any]) -> object:
        asked.append(path)
        if path[0] == "Datastream":
            return resolve_path(path[1:], {"@iot.id": 7, "Thing": THING})
        return resolve_path(path, entity)

    predicate = compile_to_predicate("Datastream/Thing/properties/district eq 'Mapo-gu'")
    assert predicate({"result": 1}, resolve) is True
    assert predicate({"result": 1}) is False  # without a resolver the path is simply absent
    assert compile_to_predicate("Datastream/id eq 7 and result gt 0")(OBSERVATION, resolve)
    assert asked == [
        ("Datastream", "Thing", "properties", "district"),
        ("Datastream", "id"),
        ("result",),
    ]


def test_conjuncts_and_properties_walk_the_tree() -> None:
    node = parse_filter("a eq 1 and (b/c gt 2 and not d) and (e eq 1 or f eq 2)")
    assert [type(n).__name__ for n in conjuncts(node)] == ["Binary", "Binary", "Unary", "Binary"]
    assert conjuncts(node)[0] == Binary("eq", a("a"), Literal(1))
    assert sorted(p.path for p in properties(node)) == [("a",), ("b", "c"), ("d",), ("e",), ("f",)]
    positions = {p.path: p.position for p in properties(node)}
    assert positions[("b", "c")] == 12


def test_values() -> None:
    assert evaluate(parse_filter("phenomenonTime"), OBSERVATION) == OBSERVATION["phenomenonTime"]
    assert evaluate(parse_filter("2 add 3 mul 4"), {}) == 14
    assert evaluate(parse_filter("-7 div 2"), {}) == -3  # integer division truncates (OData)
    assert evaluate(parse_filter("-7 mod 2"), {}) == -1
    assert evaluate(parse_filter("floor(2.5)"), {}) == 2.0
    assert evaluate(parse_filter("date(2020-03-14T23:30:00Z)"), {}) == date(2020, 3, 14)
    assert evaluate(parse_filter("time(2020-03-14T23:30:00Z)"), {}) == time(23, 30)
    negative = evaluate(parse_filter("duration'-P1DT1H30M'"), {})  # an ISO 8601 literal
    assert negative == -timedelta(days=1, minutes=90)
    assert evaluate(parse_filter("2020-03-14T15:02:00"), {}) == datetime(
        2020, 3, 14, 15, 2, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("a add 2 mul 3", Binary("add", a("a"), Binary("mul", Literal(2), Literal(3)))),
        ("(a add 2) mul 3", Binary("mul", Binary("add", a("a"), Literal(2)), Literal(3))),
        (
            "not a eq 1 and b eq 2",
            Binary(
                "and",
                Unary("not", Binary("eq", a("a"), Literal(1))),
                Binary("eq", a("b"), Literal(2)),
            ),
        ),
        (
            "a eq 1 or b eq 2 and c eq 3",
            Binary(
                "or",
                Binary("eq", a("a"), Literal(1)),
                Binary("and", Binary("eq", a("b"), Literal(2)), Binary("eq", a("c"), Literal(3))),
            ),
        ),
        ("a sub 1 sub 2", Binary("sub", Binary("sub", a("a"), Literal(1)), Literal(2))),
        ("-a mul 2", Binary("mul", Unary("-", a("a")), Literal(2))),
        ("a add 1 gt b", Binary("gt", Binary("add", a("a"), Literal(1)), a("b"))),
        ("Thing/properties/serial", a("Thing/properties/serial")),
        ("toupper(x)", Call("toupper", (a("x"),))),
        ("'it''s'", Literal("it's")),
        ("null", Literal(None)),
    ],
)
def test_precedence(text: str, tree: object) -> None:
    assert parse_filter(text) == tree


def test_positions_are_recorded() -> None:
    node = parse_filter("result gt 5")
    assert isinstance(node, Binary)
    assert (node.position, node.left.position, node.right.position) == (7, 0, 10)


@pytest.mark.parametrize(
    ("text", "position", "expected"),
    [
        ("(result gt 5 and (a eq 1)", 25, "expected ')'"),
        ("result gt 5)", 11, "expected operator or end of filter"),
        ("foo(result) eq 1", 0, "expected a known function, got 'foo'"),
        ("result eq 1 and round(result, 2) eq 3", 16, "expected 1 argument(s) to round()"),
        ("substring('a')", 0, "expected 2 to 3 argument(s)"),
        ("result gt", 9, "expected an operand, got end of filter"),
        ("result gt and 1", 10, "expected an operand, got 'and'"),
        ("name eq 'abc", 12, "expected closing quote"),
        ("name eq 'abc' 'd'", 14, "expected operator or end of filter"),
        ("result # 1", 7, "unexpected character '#'"),
        ("Thing/ eq 1", 7, "expected a property name after '/'"),
        ("x eq 2020-13-45", 5, "expected a valid date/time"),
        ("x eq 12abc", 7, "unexpected character 'a'"),
        ("st_within(location, geography'POINT(1)')", 20, "expected well-known text"),
        ("x eq duration'1D'", 5, "expected ISO 8601 duration"),
        ("f(", 0, "expected a known function"),
        ("round(1,", 8, "expected an operand"),
        ("(" * 40 + "1" + ")" * 40, 32, "nested expressions"),
        ("1" + " add 1" * 300, 6 * 101, "chained operations"),
        ("", 0, "expected an operand, got end of filter"),
    ],
)
def test_syntax_errors(text: str, position: int, expected: str) -> None:
    with pytest.raises(FilterSyntaxError) as info:
        parse_filter(text)
    assert info.value.position == position
    assert expected in info.value.message
    assert str(info.value).endswith(f"at position {position}")


def test_unbalanced_parenthesis_message() -> None:
    with pytest.raises(FilterSyntaxError, match=r"^expected '\)' at position 17$"):
        parse_filter("(result gt 5 or x")


TOKENS = [
    "result", "Thing/name", "(", ")", ",", "-", "eq", "gt", "and", "or", "not", "add", "mul",
    "mod", "div", "1", "2.5", "0", "'s'", "null", "true", "2020-03-14T15:02:00Z", "12:00",
    "duration'P1D'", "geography'POINT(1 2)'", "round(", "substring(", "st_within(", "now()",
    "year(", "geo.distance(", "location", "phenomenonTime",
]  # fmt: skip


def check_parses_or_raises(text: str) -> None:
    """Parsing raises only FilterSyntaxError (positioned in the text); evaluation never raises."""
    try:
        node = parse_filter(text)
    except FilterSyntaxError as error:
        position = error.position
    else:
        evaluate(node, {**OBSERVATION, **LOCATION})
        return
    assert 0 <= position <= len(text)


@given(st.text(alphabet=string.printable, max_size=60) | st.text(max_size=30))
def test_random_text_only_raises_filter_syntax_error(text: str) -> None:
    check_parses_or_raises(text)


@given(st.lists(st.sampled_from(TOKENS), max_size=14).map(" ".join))
def test_token_soup_parses_or_raises_filter_syntax_error(text: str) -> None:
    check_parses_or_raises(text)

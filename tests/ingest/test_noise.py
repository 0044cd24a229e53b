"""Seoul road-traffic noise workbooks: the six real monthly files and hand-made broken ones.

Real data: ``../shared/data/seoul_noise/2025-0{1..6}.xlsx`` (see ``../shared/data/PROVENANCE.md``).
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import openpyxl
import pytest
from openpyxl.worksheet.worksheet import Worksheet

from citytwin.errors import FeedError
from citytwin.ingest import read_feed
from citytwin.ingest.pipeline import IngestReport, datastream_key, ingest
from citytwin.model.sensing import Thing, stable_id
from citytwin.store import Store, open_store
from citytwin.store.base import to_micros

DATA = Path(__file__).parents[2] / ".." / "shared" / "data" / "seoul_noise"
WORKBOOKS = [DATA / f"2025-0{month}.xlsx" for month in range(1, 7)]
STATIONS = {"시청", "성수", "신촌", "신사"}
STORE_URLS = ["memory://", "duckdb://"]
KST = timedelta(hours=9)


def run(path: Path, store: Store) -> IngestReport:
    return ingest(read_feed("noise", str(path)), store)


def hourly_cells(path: Path) -> tuple[int, int]:
    """(numeric hourly cells, sheets), counted straight from the fixed published layout:
    header in row 6 (B6 '측정일\\시간', C6..Z6 = 1..24), dates in B7.., LEQ in C..Z."""
    workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        numeric = 0
        for ws in workbook.worksheets:
            header = next(
                ws.iter_rows(min_row=6, max_row=6, min_col=2, max_col=26, values_only=True)
            )
            assert str(header[0]).startswith("측정일")
            assert list(header[1:]) == list(range(1, 25))
            for row in ws.iter_rows(min_row=7, min_col=2, max_col=26, values_only=True):
                if isinstance(row[0], datetime):
                    numeric += sum(isinstance(v, int | float) for v in row[1:])
        return numeric, len(workbook.worksheets)
    finally:
        workbook.close()


def cell(path: Path, sheet: str, ref: str) -> object:
    workbook = openpyxl.load_workbook(path, data_only=True)
    try:
        return workbook[sheet][ref].value
    finally:
        workbook.close()


def observed(store: Store, station: str, kst: datetime) -> list[float]:
    """Results of station's noise datastream at a KST hour start."""
    utc = (kst - KST).replace(tzinfo=UTC)
    ids = [stable_id("Datastream", datastream_key(f"noise:{station}", "noise"))]
    frame = store.observations(datastream_ids=ids, start=utc, end=utc + timedelta(hours=1))
    assert frame.phenomenon_time.tolist() == [to_micros(utc)] * len(frame)
    return [float(v) for v in frame.result]


@pytest.fixture(params=STORE_URLS)
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    with open_store(request.param) as opened:
        yield opened


# -- the real workbooks ---------------------------------------------------------------------


@pytest.mark.parametrize("path", WORKBOOKS, ids=lambda p: p.stem)
def test_every_hourly_cell_is_stored_once(path: Path, store: Store) -> None:
    numeric, sheets = hourly_cells(path)
    year, month = map(int, path.stem.split("-"))
    assert numeric == sheets * calendar.monthrange(year, month)[1] * 24

    first = run(path, store).feeds["noise"]
    assert (first.read, first.stored, first.quarantined) == (numeric, numeric, 0)
    assert len(store.observations()) == numeric
    assert {t.key for t in store.entities(Thing)} == {f"noise:{s}" for s in STATIONS}
    assert any("'낮'" in n and "'밤'" in n and "not stored" in n for n in first.notes)

    again = run(path, store).feeds["noise"]
    assert (again.duplicates, again.stored) == (numeric, 0)
    assert len(store.observations()) == numeric


def test_things_are_named_and_not_placed(store: Store) -> None:
    run(WORKBOOKS[0], store)
    things = {t.key: t for t in store.entities(Thing)}
    assert things["noise:시청"].name == "Road noise 시청"
    assert things["noise:시청"].properties["station"] == "시청"


def test_first_hour_of_january_at_city_hall(store: Store) -> None:
    path = WORKBOOKS[0]
    assert cell(path, "시청(시간별)", "C7") == 64.4
    run(path, store)
    # hour 1 of 2025-01-01 = 00:00–01:00 KST = 2024-12-31T15:00Z
    assert observed(store, "시청", datetime(2025, 1, 1, 0)) == [64.4]


@pytest.mark.parametrize(
    ("month", "sheet", "row", "column", "kst"),
    [
        (6, "신사(시간별)", 36, "Z", datetime(2025, 6, 30, 23)),  # hour 24 of the last day
        (2, "성수(시간별)", 20, "N", datetime(2025, 2, 14, 11)),  # hour 12
        (4, "신촌(시간별)", 7, "D", datetime(2025, 4, 1, 1)),  # hour 2
    ],
)
def test_values_match_the_sheet(
    store: Store, month: int, sheet: str, row: int, column: str, kst: datetime
) -> None:
    path = DATA / f"2025-0{month}.xlsx"
    assert cell(path, sheet, f"B{row}") == datetime(kst.year, kst.month, kst.day)
    expected = cell(path, sheet, f"{column}{row}")
    assert isinstance(expected, int | float)
    run(path, store)
    assert observed(store, sheet.split("(")[0], kst) == [float(expected)]


def test_readings_carry_excel_rows_and_hour_period() -> None:
    batch = next(read_feed("noise", str(WORKBOOKS[0])))
    assert batch.readings.period == "PT1H"
    assert set(batch.readings.line.tolist()) == set(range(7, 38))
    assert batch.line_text is not None
    assert batch.line_text(7).startswith("B7=2025-01-01, C7=64.4, D7=62")


# -- hand-made workbooks --------------------------------------------------------------------


Value = str | int | float | datetime | None
Day = list[Value]


def make_sheet(ws: Worksheet, station: str, days: list[Day], *, top: int, left: int) -> None:
    """A sheet in the published layout (month 2025-01), its label row at (top, left)."""
    ws.cell(top, left, "측정월: ")
    ws.cell(top, left + 1, datetime(2025, 1, 1))
    ws.cell(top, left + 12, "측정장소 :")
    ws.cell(top, left + 14, station)
    ws.cell(top, left + 24, "측정 데이터: ")
    ws.cell(top, left + 26, "LEQ")
    header: Day = ["측정일\\시간", *range(1, 25), "낮", "밤"]
    for offset, value in enumerate(header):
        ws.cell(top + 2, left + offset, value)
    for number, row in enumerate(days):
        for offset, value in enumerate(row):
            ws.cell(top + 3 + number, left + offset, value)


def day(when: date) -> Day:
    """One data row: the date, 24 hourly values 60.0–62.3 dB, day and night aggregates."""
    return [datetime(when.year, when.month, when.day), *(60 + h / 10 for h in range(24)), 65, 55]


def save(tmp_path: Path, sheets: dict[str, list[Day]], *, top: int = 4, left: int = 2) -> Path:
    """A workbook with one sheet per title; the published layout has top=4, left=2 (B4)."""
    workbook = openpyxl.Workbook()
    for ws in workbook.worksheets:
        workbook.remove(ws)
    for title, days in sheets.items():
        station = title.split("(")[0]
        make_sheet(workbook.create_sheet(title), station, days, top=top, left=left)
    path = tmp_path / "noise.xlsx"
    workbook.save(path)
    return path


def test_broken_rows_are_quarantined_and_good_cells_stored(tmp_path: Path) -> None:
    bad_cell = day(date(2025, 1, 1))
    bad_cell[4] = "n/a"  # hour 4, column F (the sheet starts at column B)
    no_date = day(date(2025, 1, 2))
    no_date[0] = None
    path = save(tmp_path, {"시청(시간별)": [bad_cell, no_date, day(date(2025, 1, 3))]})

    with open_store("memory://") as store:
        summary = run(path, store).feeds["noise"]
        quarantined = sorted(store.quarantined(feed="noise"), key=lambda r: r.line or 0)
        stored = len(store.observations())

    assert (stored, summary.stored, summary.quarantined) == (23 + 24, 47, 2)
    first, second = quarantined
    assert first.line == 7
    assert "sheet '시청(시간별)' row 7, column F (hour 4): 'n/a' is not a number" in first.reason
    assert "other hourly values were stored" in first.reason
    assert "F7='n/a'" in first.raw
    assert first.raw.startswith("B7=2025-01-01, C7=60")
    assert second.line == 8
    assert "sheet '시청(시간별)' row 8, column B: no date" in second.reason
    assert "24 hourly value(s) were not stored" in second.reason
    assert second.raw.startswith("C8=60")


def test_dates_outside_the_month_and_text_dates(tmp_path: Path) -> None:
    path = save(
        tmp_path,
        {
            "신사(시간별)": [
                day(date(2025, 1, 31)),
                day(date(2025, 2, 1)),
                ["2025-01-30", *day(date(2025, 1, 30))[1:]],
                ["합계", *day(date(2025, 1, 29))[1:]],
            ]
        },
    )
    batches = list(read_feed("noise", str(path)))
    rejects = {r.line: r.reason for r in batches[0].rejects}
    assert set(rejects) == {8, 10}
    assert "date 2025-02-01 is outside the sheet's measurement month 2025-01" in rejects[8]
    assert "'합계' is not a date" in rejects[10]
    assert len(batches[0].readings) == 48


def test_shifted_layout_is_found_by_its_labels(tmp_path: Path) -> None:
    path = save(tmp_path, {"Sheet A": [day(date(2025, 1, 1))]}, top=9, left=4)
    (batch,) = read_feed("noise", str(path))
    assert batch.readings.things[0].key == "noise:Sheet A"
    assert batch.readings.line.tolist() == [12] * 24
    first = to_micros(datetime(2024, 12, 31, 15, tzinfo=UTC))
    assert batch.readings.time.min() == first
    assert batch.readings.time.max() == first + 23 * 3_600_000_000


def test_empty_cells_are_missing_values(tmp_path: Path) -> None:
    sparse = day(date(2025, 1, 1))
    sparse[1] = sparse[24] = None
    path = save(tmp_path, {"성수(시간별)": [sparse]})
    (batch,) = read_feed("noise", str(path))
    assert len(batch.readings) == 22
    assert not batch.rejects
    assert any("2 empty hourly cell(s)" in note for note in batch.notes)


def test_unknown_header_columns_are_noted(tmp_path: Path) -> None:
    path = save(tmp_path, {"신촌(시간별)": [day(date(2025, 1, 1))]})
    workbook = openpyxl.load_workbook(path)
    workbook.worksheets[0]["AC6"] = "평균"
    workbook.worksheets[0]["AC7"] = 61.5
    workbook.save(path)
    (batch,) = read_feed("noise", str(path))
    assert len(batch.readings) == 24
    assert any("AC6='평균'" in note and "not read" in note for note in batch.notes)


def test_sheets_without_the_layout_are_skipped_with_a_note(tmp_path: Path) -> None:
    path = save(tmp_path, {"시청(시간별)": [day(date(2025, 1, 1))]})
    workbook = openpyxl.load_workbook(path)
    workbook.create_sheet("차트")["A1"] = "요약"
    workbook.save(path)
    (batch,) = read_feed("noise", str(path))
    assert any("sheet '차트' not read: no header row" in note for note in batch.notes)


def test_a_workbook_without_any_noise_sheet_is_a_feed_error(tmp_path: Path) -> None:
    path = tmp_path / "other.xlsx"
    workbook = openpyxl.Workbook()
    workbook.worksheets[0]["A1"] = "hello"
    workbook.save(path)
    with pytest.raises(FeedError, match="no sheet has the road-noise layout"):
        list(read_feed("noise", str(path)))


@pytest.mark.parametrize("name", ["noise.xlsx", "noise.csv"])
def test_a_file_that_is_not_xlsx_is_a_feed_error(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("측정일,1,2\n2025-01-01,64.4,62\n", encoding="utf-8")
    with pytest.raises(FeedError) as caught:
        list(read_feed("noise", str(path)))
    message = str(caught.value)
    assert message.startswith(f"{path}: is not a valid .xlsx workbook")
    assert "Traceback" not in message
    assert "\n" not in message


def test_missing_and_oversized_files_are_feed_errors(tmp_path: Path) -> None:
    with pytest.raises(FeedError, match="no such file"):
        list(read_feed("noise", str(tmp_path / "absent.xlsx")))
    with pytest.raises(FeedError, match="the limit is 10"):
        list(read_feed("noise", str(WORKBOOKS[0]), max_bytes=10))

"""Property-based fuzzing of the CSV feed readers: any bytes give rows, rejects with reasons, or
one FeedError — never another exception (which the CLI would show as a traceback)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citytwin.errors import FeedError
from citytwin.ingest import read_feed
from citytwin.ingest.pipeline import ingest
from citytwin.store import open_store

SDOT_HEADER = (
    "모델명,시리얼,미세먼지2.5(초미세먼지),미세먼지10(미세먼지),기온,상대습도,풍향,풍속,돌풍 풍향,"
    "돌풍 풍속,조도,자외선,소음,진동(x),진동(y),진동(z),진동(x) 최대,진동(y) 최대,진동(z) 최대,"
    "흑구 온도,pm25 보정,pm10 보정,측정시간,등록 일시"
)
KMA_HEADER = "지점,지점명,일시,기온(°C),기온 QC플래그,강수량(mm),풍속(m/s),풍향(16방위),습도(%)"

cells = st.one_of(
    st.integers(-(10**6), 10**13).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.text(alphabet="0123456789.-+eE:/ 가나,\"'\t", max_size=14),
    st.just(""),
)
rows = st.lists(st.lists(cells, min_size=0, max_size=30).map(",".join), max_size=25)
sdot_rows = st.lists(  # the right width, so garbage reaches typed parsing, scaling and QC
    st.lists(cells, min_size=24, max_size=24).map(",".join), max_size=25
)
encodings = st.sampled_from(["utf-8", "utf-8-sig", "cp949"])


def _check(feed: str, path: Path, **options: str) -> None:
    """Read and store: only a FeedError may escape, and every reject carries a reason."""
    try:
        batches = list(read_feed(feed, str(path), **options))
    except FeedError as exc:
        message = str(exc)
        assert message.startswith(str(path))
        return
    with open_store("memory://") as store:
        report = ingest(iter(batches), store)
        assert all(record.reason for record in store.quarantined())
    for batch in batches:
        assert len(batch.readings.line) == len(batch.readings)
    assert sum(s.quarantined for s in report.feeds.values()) == sum(len(b.rejects) for b in batches)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=rows, encoding=encodings, noise=st.binary(max_size=40))
def test_sdot_reader_survives_anything(
    tmp_path: Path, body: list[str], encoding: str, noise: bytes
) -> None:
    path = tmp_path / "sdot.csv"
    path.write_bytes((SDOT_HEADER + "\n" + "\n".join(body)).encode(encoding, "replace") + noise)
    _check("sdot", path)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=rows, encoding=encodings)
def test_kma_reader_survives_anything(tmp_path: Path, body: list[str], encoding: str) -> None:
    path = tmp_path / "kma.csv"
    path.write_bytes((KMA_HEADER + "\n" + "\n".join(body)).encode(encoding, "replace"))
    _check("kma", path)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(max_size=300))
def test_readers_survive_raw_bytes(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "raw.csv"
    path.write_bytes(raw)
    readers: list[tuple[str, dict[str, str]]] = [
        ("sdot", {}),
        ("kma", {}),
        ("generic", {"mapping": "airkorea"}),
        ("noise", {}),
    ]
    for feed, options in readers:
        _check(feed, path, **options)

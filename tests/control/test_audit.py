"""The tamper-evident audit log: the acceptance of issue 7, item 5.

Editing one byte of the audit store makes ``citytwin audit verify`` fail and name the entry.
Hashes are recomputed here independently with hashlib over the canonical JSON the issue specifies.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from citytwin.cli.audit import audit_app
from citytwin.control.audit import GENESIS, AuditLog
from citytwin.errors import StoreError, ValidationError

runner = CliRunner()
app = typer.Typer()
app.add_typer(audit_app, name="audit")

START = datetime(2024, 7, 1, 12, 0, tzinfo=UTC)

# One decision's life: rule fired on observations, simulated, approved, sent, acknowledged.
DECISION: list[tuple[str, str, dict[str, str], dict[str, object]]] = [
    ("rule_fired", "system", {"rule": "heat-alert"}, {"observations": ["obs-17", "obs-18"]}),
    ("task_created", "system", {"rule": "heat-alert", "task": "t-1"}, {"simulated_c": 31.5}),
    ("approved", "operator:anna", {"task": "t-1"}, {"reason": "Hitzewarnung für Zürich, 31,5 °C"}),
    ("sent", "system", {"task": "t-1", "actuator": "fountain-3"}, {"command": {"on": True}}),
    ("acknowledged", "actuator:fountain-3", {"task": "t-1"}, {"ack": "ok"}),
]


def ticking_clock() -> Callable[[], datetime]:
    """One second per call from START, so entry times are known in advance."""
    ticks = iter(range(1_000))
    return lambda: START + timedelta(seconds=next(ticks))


def write_decision(path: Path) -> AuditLog:
    log = AuditLog(path, clock=ticking_clock())
    for kind, actor, subject, payload in DECISION:
        log.append(kind, actor=actor, subject=subject, payload=payload)
    return log


def independent_hash(line: str) -> str:
    record = json.loads(line)
    del record["hash"]
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_round_trip_links_every_entry_to_the_one_before(tmp_path: Path) -> None:
    log = write_decision(tmp_path / "audit.jsonl")
    lines = (tmp_path / "audit.jsonl").read_text(encoding="utf-8").splitlines()
    entries = log.entries()

    assert [entry.seq for entry in entries] == [1, 2, 3, 4, 5]
    assert [entry.kind for entry in entries] == [kind for kind, *_ in DECISION]
    assert entries[2].payload == DECISION[2][3]
    assert entries[3].subject == DECISION[3][2]
    assert entries[0].time == "2024-07-01T12:00:00.000000+00:00"
    assert entries[4].time == "2024-07-01T12:00:04.000000+00:00"
    assert [entry.hash for entry in entries] == [independent_hash(line) for line in lines]
    assert [entry.prev for entry in entries] == [GENESIS] + [e.hash for e in entries[:-1]]
    assert "°C" in lines[2]  # raw UTF-8, not \\u escapes

    report = log.verify()
    assert (report.ok, report.entries_checked) == (True, 5)
    assert report.head_hash == entries[-1].hash
    assert log.head() == (5, entries[-1].hash)


def test_reopening_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first = write_decision(path).entries()[-1]
    again = AuditLog(path).append("expired", actor="system", subject={"task": "t-2"})
    assert (again.seq, again.prev) == (6, first.hash)
    assert AuditLog(path).verify().entries_checked == 6


def test_every_single_byte_edit_is_detected_and_names_its_entry(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_decision(path)
    original = path.read_bytes()
    for position in range(len(original)):
        edited = bytearray(original)
        edited[position] ^= 0x01
        path.write_bytes(bytes(edited))
        report = AuditLog(path).verify()
        line = original[:position].count(b"\n") + 1
        assert not report.ok, f"byte {position} edit went unnoticed"
        assert (report.line, report.sequence) == (line, line), (position, report)
        assert report.entries_checked == line - 1


def test_editing_a_payload_names_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_decision(path)
    path.write_text(path.read_text(encoding="utf-8").replace("31,5 °C", "21,5 °C"), "utf-8")
    report = AuditLog(path).verify()
    assert (report.ok, report.sequence, report.line) == (False, 3, 3)
    assert report.problem == "hash mismatch (entry edited)"
    assert report.message.startswith("entry 3 (line 3): hash mismatch")


def test_deleting_a_middle_entry_names_the_entry_after_the_gap(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_decision(path)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[:2] + lines[3:]), encoding="utf-8")
    report = AuditLog(path).verify()
    assert (report.sequence, report.line, report.entries_checked) == (4, 3, 2)
    assert report.problem == "prev does not match entry 2's hash (entry deleted or reordered)"


def test_reordering_entries_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_decision(path)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[1], lines[2] = lines[2], lines[1]
    path.write_text("".join(lines), encoding="utf-8")
    report = AuditLog(path).verify()
    assert (report.sequence, report.line) == (3, 2)
    assert "entry deleted or reordered" in str(report.problem)


def test_truncated_tail_is_caught_only_with_a_recorded_head(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    head = write_decision(path).head()
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[:3]), encoding="utf-8")

    assert AuditLog(path).verify().ok  # a shorter chain is still a valid chain
    report = AuditLog(path).verify(expected_head=head)
    assert (report.ok, report.entries_checked, report.sequence) == (False, 3, 4)
    assert "log truncated" in str(report.problem)

    path.write_text("", encoding="utf-8")
    assert AuditLog(path).verify(expected_head=head).entries_checked == 0


def test_a_rewritten_log_does_not_match_the_recorded_head(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    head = write_decision(path).head()
    path.unlink()
    forged = AuditLog(path, clock=lambda: START)
    for kind, actor, subject, _ in DECISION:
        forged.append(kind, actor=actor, subject=subject, payload={})
    report = forged.verify(expected_head=head)
    assert (report.ok, report.sequence, report.line) == (False, 5, 5)
    assert "recorded head" in str(report.problem)


def test_concurrent_appends_keep_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    logs = [AuditLog(path), AuditLog(path)]  # two writers on one file, as two processes would be

    def work(worker: int) -> None:
        for step in range(25):
            logs[worker % 2].append("rule_fired", actor=f"w{worker}", payload={"step": step})

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    report = AuditLog(path).verify()
    assert report.ok, report.message
    entries = AuditLog(path).entries()
    assert [entry.seq for entry in entries] == list(range(1, 201))
    assert sorted((e.actor, e.payload["step"]) for e in entries) == sorted(
        (f"w{w}", s) for w in range(8) for s in range(25)
    )


def test_a_torn_last_line_is_reported_and_blocks_appends(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_decision(path)
    with open(path, "ab") as handle:
        handle.write(b'{"actor":"system","hash":')
    report = AuditLog(path).verify()
    assert (report.sequence, report.line) == (6, 6)
    assert str(report.problem).startswith("unparseable line")
    with pytest.raises(StoreError, match="last line is damaged"):
        AuditLog(path).append("expired", actor="system")
    with pytest.raises(StoreError, match="line 6"):
        AuditLog(path).entries()


def test_bad_entries_are_refused(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    with pytest.raises(ValidationError, match=r"kind 'Rule Fired'.*actor"):
        log.append("Rule Fired", actor="")
    with pytest.raises(ValidationError, match="not plain JSON"):
        log.append("sent", actor="system", payload={"value": math.nan})
    with pytest.raises(ValidationError, match="naive time"):
        AuditLog(tmp_path / "b.jsonl", clock=datetime.now).append("sent", actor="system")
    assert (tmp_path / "audit.jsonl").read_bytes() == b""  # nothing half-written


def flat(text: str) -> str:
    return " ".join(text.split())


def test_cli_verify_passes_then_names_the_edited_entry(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    head = write_decision(path).head()
    good = runner.invoke(app, ["audit", "verify", str(path)])
    assert good.exit_code == 0, good.output
    assert flat(good.output) == f"5 entries, chain intact, head {head[1]}"

    expected = runner.invoke(app, ["audit", "verify", str(path), "--expect", f"5:{head[1]}"])
    assert expected.exit_code == 0, expected.output

    content = bytearray(path.read_bytes())
    content[content.index(b"fountain-3")] ^= 0x01  # one byte of entry 4
    path.write_bytes(bytes(content))
    bad = runner.invoke(app, ["audit", "verify", str(path)])
    assert bad.exit_code == 1
    assert "entry 4 (line 4): hash mismatch (entry edited)" in flat(bad.output)


def test_cli_default_path_expect_and_missing_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "decisions.jsonl"
    count, digest = write_decision(path).head()
    monkeypatch.setenv("CITYTWIN_AUDIT_LOG", str(path))
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[:-1]), encoding="utf-8")

    assert runner.invoke(app, ["audit", "verify"]).exit_code == 0
    cut = runner.invoke(app, ["audit", "verify", "--expect", f"{count}:{digest}"])
    assert cut.exit_code == 1
    assert "log truncated" in flat(cut.output)
    assert runner.invoke(app, ["audit", "verify", "--expect", "5:abc"]).exit_code == 2
    missing = runner.invoke(app, ["audit", "verify", str(tmp_path / "none.jsonl")])
    assert missing.exit_code == 2
    assert "no audit log" in flat(missing.output)


def test_cli_show_lists_the_newest_entries(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_decision(path)
    shown = runner.invoke(app, ["audit", "show", str(path), "--last", "2"])
    assert shown.exit_code == 0, shown.output
    assert "2 of 5 entries" in flat(shown.output)
    cells = [line.split("│") for line in shown.output.splitlines() if line.startswith("│")]
    rows = [(row[1].strip(), row[3].strip()) for row in cells if row[1].strip()]
    assert rows == [("4", "sent"), ("5", "acknowledged")]

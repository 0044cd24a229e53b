"""The scenario registry on disk: specs, runs with provenance, reruns and comparisons.

Layout under ``root`` (the CLI's ``--dir``, default ``scenarios/``)::

    <name>/scenario.yaml                 the spec as created (paths made absolute)
    <name>/runs/<name>.<n>/              one run: result files, summary.json, provenance.json
    _baselines/<key>/                    the baseline (no changes) of a base + parameters + seed,
                                         stored once and shared by every scenario that has it

A run's ``provenance.json`` holds the citytwin, Python, numpy, scipy and pandas versions, the
spec's canonical JSON and sha256, the sha256 of every input file, the seed, start/finish (UTC),
duration, the sha256 of each result file and ``result_sha256`` over them, so :func:`rerun` can
prove a run reproduces bit for bit. A run folder without ``provenance.json`` is unfinished and
ignored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import re
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy
import yaml

import citytwin
from citytwin.errors import ValidationError
from citytwin.simulate.scenario import (
    NAME_PATTERN,
    Progress,
    Scenario,
    ScenarioComparison,
    Summary,
    canonical_json,
    get_adapter,
    load_scenario,
    resolve_paths,
)

logger = logging.getLogger(__name__)

BASELINES = "_baselines"
_NAME = NAME_PATTERN.strip("^$")
RUN_ID_PATTERN = re.compile(rf"^(?:_baseline\.[0-9a-f]{{16}}|{_NAME}\.[1-9][0-9]*)$")


class ScenarioNotFoundError(ValidationError):
    """A scenario or run named in a request is not in the registry."""

    def __init__(self, what: str, name: str, root: Path, known: list[str]) -> None:
        self.parameter = what
        shown = ", ".join(known[:20]) or "none yet"
        super().__init__(f"{what} {name!r} not found in {root}; known: {shown}")


@dataclass(frozen=True)
class RunRecord:
    """One stored run (a scenario's variant or a shared baseline)."""

    run_id: str
    scenario: str
    model: str
    folder: Path
    summary: Summary
    result_sha256: str
    baseline_id: str | None
    started: str
    finished: str
    duration_s: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields (``folder`` as text)."""
        return {**self.__dict__, "folder": str(self.folder)}


@dataclass(frozen=True)
class RerunCheck:
    """The outcome of re-running a stored run: identical, or which outputs/inputs differ."""

    run_id: str
    identical: bool
    stored_sha256: str
    rerun_sha256: str
    differing: tuple[str, ...]
    inputs_changed: tuple[str, ...]


@dataclass(frozen=True)
class Comparison:
    """Deltas of run ``a`` (variant) against run ``b`` (base) and the spec of ``a``."""

    a: str
    b: str
    scenario: Scenario
    result: ScenarioComparison

    def as_dict(self) -> dict[str, Any]:
        """The headline figures, JSON-ready."""
        return {"a": self.a, "b": self.b, "model": self.result.model, **self.result.summary}


def create(
    root: Path, spec: Scenario | Mapping[str, Any] | str, *, base_dir: Path | None = None
) -> Scenario:
    """Validate ``spec`` and store it as ``root/<name>/scenario.yaml`` (replacing an older one).

    Relative paths in ``base`` are resolved against ``base_dir`` (default: the working folder)
    and stored absolute; stored runs keep the spec they ran in their provenance.
    """
    scenario = spec if isinstance(spec, Scenario) else load_scenario(spec)
    adapter = get_adapter(scenario.model)
    scenario = resolve_paths(scenario, adapter.path_keys, base_dir or Path.cwd())
    folder = Path(root) / scenario.name
    (folder / "runs").mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(scenario.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    (folder / "scenario.yaml").write_text(text, encoding="utf-8")
    logger.info("stored scenario %s in %s", scenario.name, folder)
    return scenario


def get_scenario(root: Path, name: str) -> Scenario:
    """The stored spec of scenario ``name``."""
    path = Path(root) / _checked_name(name) / "scenario.yaml"
    if not path.is_file():
        raise ScenarioNotFoundError("scenario", name, Path(root), _names(Path(root)))
    return load_scenario(path.read_text(encoding="utf-8"), source=str(path))


def list_scenarios(root: Path) -> list[dict[str, Any]]:
    """Every stored scenario: name, model, description, number of runs, latest run id."""
    rows = []
    for name in _names(Path(root)):
        scenario = get_scenario(root, name)
        runs = _run_folders(Path(root) / name)
        rows.append({
            "name": name, "model": scenario.model, "description": scenario.description,
            "changes": len(scenario.changes), "runs": len(runs),
            "latest_run": runs[-1].name if runs else None,
        })  # fmt: skip
    return rows


def list_runs(root: Path, name: str) -> list[RunRecord]:
    """The stored runs of scenario ``name``, oldest first."""
    get_scenario(root, name)
    return [_record(folder) for folder in _run_folders(Path(root) / name)]


def run(root: Path, name: str, *, on_progress: Progress | None = None) -> RunRecord:
    """Run scenario ``name`` and store the run; its baseline is run and stored first if new."""
    scenario = get_scenario(root, name)
    baseline = ensure_baseline(root, scenario, on_progress=on_progress)
    folder = _new_run_folder(Path(root) / name / "runs", name)
    try:
        return _execute(scenario, folder, baseline_id=baseline.run_id, on_progress=on_progress)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def ensure_baseline(
    root: Path, scenario: Scenario, *, on_progress: Progress | None = None
) -> RunRecord:
    """The stored baseline of ``scenario`` (its base, parameters and seed), run once if new."""
    baseline = scenario.baseline()
    inputs = _input_hashes(baseline)
    key = canonical_json({
        "model": baseline.model, "base": baseline.base, "parameters": baseline.parameters,
        "seed": baseline.seed, "inputs": sorted(inputs.values()),
    })  # fmt: skip
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    folder = Path(root) / BASELINES / digest
    if (folder / "provenance.json").is_file():
        return _record(folder)
    shutil.rmtree(folder, ignore_errors=True)  # an unfinished earlier attempt
    folder.mkdir(parents=True)
    try:
        return _execute(baseline, folder, baseline_id=None, on_progress=on_progress)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def rerun(root: Path, run_id: str) -> RerunCheck:
    """Run a stored run's spec again (into a scratch folder) and compare every result file."""
    folder = find_run(root, run_id)
    provenance = _read_json(folder / "provenance.json")
    scenario = load_scenario(provenance["spec"], source=f"{run_id} provenance")
    now = _input_hashes(scenario)
    changed = tuple(p for p, h in provenance["inputs"].items() if now.get(p) != h)
    with tempfile.TemporaryDirectory(prefix="citytwin-rerun-") as scratch:
        again = _execute(scenario, Path(scratch), baseline_id=None, on_progress=None)
        files = _read_json(Path(scratch) / "provenance.json")["result_files"]
    differing = tuple(n for n, h in provenance["result_files"].items() if files.get(n) != h)
    if differing:
        logger.warning("rerun of %s differs in %s", run_id, ", ".join(differing))
    return RerunCheck(
        run_id, not differing, provenance["result_sha256"], again.result_sha256, differing,
        changed,
    )  # fmt: skip


def compare(root: Path, a: str, b: str | None = None) -> Comparison:
    """Deltas of ``a`` against ``b`` (scenario names mean their latest run; run ids as stored).

    ``b`` defaults to the baseline of ``a``'s run.
    """
    folder_a = _resolve(root, a)
    provenance = _read_json(folder_a / "provenance.json")
    folder_b = _resolve(root, b) if b else find_run(root, provenance.get("baseline_id") or "")
    scenario = load_scenario(provenance["spec"], source=f"{folder_a.name} provenance")
    adapter = get_adapter(scenario.model)
    record_a, record_b = _record(folder_a), _record(folder_b)
    if record_b.model != record_a.model:
        raise ValidationError(
            f"compare {record_a.run_id} ({record_a.model}) with {record_b.run_id} "
            f"({record_b.model}): expected runs of the same model"
        )
    variant = adapter.load(folder_a, record_a.summary)
    base = adapter.load(folder_b, record_b.summary)
    return Comparison(record_a.run_id, record_b.run_id, scenario, adapter.compare(variant, base))


def write_comparison(comparison: Comparison, out: Path) -> dict[str, Path]:
    """``deltas.csv``, ``summary.json`` and (when the base has places) ``difference.png``."""
    out.mkdir(parents=True, exist_ok=True)
    written = {"deltas": out / "deltas.csv", "summary": out / "summary.json"}
    comparison.result.table.to_csv(written["deltas"], index=False, lineterminator="\n")
    text = json.dumps(comparison.as_dict(), indent=2, sort_keys=True) + "\n"
    written["summary"].write_text(text, encoding="utf-8")
    picture = comparison_picture(comparison, out / "difference.png")
    if picture is not None:
        written["picture"] = picture
    return written


def comparison_picture(comparison: Comparison, path: Path) -> Path | None:
    """The difference map of ``comparison`` as PNG (None when the model's base has no places)."""
    adapter = get_adapter(comparison.scenario.model)
    return adapter.picture(comparison.result, comparison.scenario, path)


def find_run(root: Path, run_id: str) -> Path:
    """The folder of run ``run_id`` (``<name>.<n>`` or ``_baseline.<key>``)."""
    if not RUN_ID_PATTERN.match(run_id):
        raise ValidationError(
            f"run id {run_id!r}: expected <scenario>.<n> (e.g. closure.1) or _baseline.<key>"
        )
    name, _, rest = run_id.partition(".")
    folder = (
        Path(root) / BASELINES / rest
        if name == "_baseline"
        else Path(root) / name / "runs" / run_id
    )
    if not (folder / "provenance.json").is_file():
        known = [r.run_id for n in _names(Path(root)) for r in list_runs(root, n)]
        raise ScenarioNotFoundError("run", run_id, Path(root), known)
    return folder


def _resolve(root: Path, token: str) -> Path:
    if "." in token:
        return find_run(root, token)
    get_scenario(root, token)
    runs = _run_folders(Path(root) / token)
    if not runs:
        raise ValidationError(f"scenario {token!r} has no runs yet; run it first")
    return runs[-1]


def _execute(
    scenario: Scenario, folder: Path, *, baseline_id: str | None, on_progress: Progress | None
) -> RunRecord:
    """Run ``scenario`` into ``folder`` and write the summary and provenance (last)."""
    adapter = get_adapter(scenario.model)
    inputs = _input_hashes(scenario)
    started, clock = datetime.now(UTC), time.perf_counter()
    result = adapter.run(scenario, on_progress=on_progress)
    files = {path.name: _file_sha256(path) for path in adapter.save(result, folder)}
    duration = time.perf_counter() - clock
    summary_text = json.dumps(result.summary, indent=2, sort_keys=True) + "\n"
    (folder / "summary.json").write_text(summary_text, encoding="utf-8")
    provenance = {
        "run_id": _run_id(folder), "scenario": scenario.name, "model": scenario.model,
        "versions": _versions(), "spec": scenario.model_dump(mode="json"),
        "spec_canonical": scenario.canonical_json(), "spec_sha256": scenario.sha256(),
        "inputs": inputs, "seed": scenario.seed, "started": _iso(started),
        "finished": _iso(datetime.now(UTC)), "duration_s": round(duration, 6),
        "result_files": files, "result_sha256": _result_sha256(files, adapter.result_files),
        "baseline_id": baseline_id,
    }  # fmt: skip
    text = json.dumps(provenance, indent=2, sort_keys=True) + "\n"
    (folder / "provenance.json").write_text(text, encoding="utf-8")
    logger.info("scenario %s run %s: %s", scenario.name, provenance["run_id"], result.summary)
    return _record(folder)


def _record(folder: Path) -> RunRecord:
    p = _read_json(folder / "provenance.json")
    summary = _read_json(folder / "summary.json")
    return RunRecord(
        p["run_id"], p["scenario"], p["model"], folder, summary, p["result_sha256"],
        p["baseline_id"], p["started"], p["finished"], p["duration_s"],
    )  # fmt: skip


def _run_id(folder: Path) -> str:
    return f"_baseline.{folder.name}" if folder.parent.name == BASELINES else folder.name


def _new_run_folder(runs: Path, name: str) -> Path:
    """A fresh ``runs/<name>.<n>``; ``mkdir`` is the lock, so concurrent runs never share one."""
    runs.mkdir(parents=True, exist_ok=True)
    numbers = [int(p.name.rpartition(".")[2]) for p in runs.glob(f"{name}.*")]
    n = max(numbers, default=0) + 1
    while True:
        try:
            (runs / f"{name}.{n}").mkdir()
            return runs / f"{name}.{n}"
        except FileExistsError:
            n += 1


def _run_folders(scenario_folder: Path) -> list[Path]:
    done = [p for p in (scenario_folder / "runs").glob("*.*") if (p / "provenance.json").is_file()]
    return sorted(done, key=lambda p: int(p.name.rpartition(".")[2]))


def _names(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    return sorted(p.parent.name for p in root.glob("*/scenario.yaml") if p.parent.name[0] != "_")


def _checked_name(name: str) -> str:
    if not re.match(NAME_PATTERN, name):
        raise ValidationError(f"scenario name {name!r}: expected to match {NAME_PATTERN}")
    return name


def _input_hashes(scenario: Scenario) -> dict[str, str]:
    files = get_adapter(scenario.model).inputs(scenario)
    return {str(path): _file_sha256(path) for path in sorted(files)}


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _result_sha256(files: Mapping[str, str], order: tuple[str, ...]) -> str:
    """sha256 over ``name<TAB>sha256<LF>`` of each result file, in the model's file order."""
    lines = "".join(f"{name}\t{files[name]}\n" for name in order)
    return hashlib.sha256(lines.encode()).hexdigest()


def _versions() -> dict[str, str]:
    return {
        "citytwin": citytwin.__version__, "python": platform.python_version(),
        "numpy": np.__version__, "scipy": scipy.__version__, "pandas": pd.__version__,
        "platform": platform.platform(),
    }  # fmt: skip


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _read_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data

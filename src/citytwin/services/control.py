"""The control loop in a running twin: stored observations → the controller → actuators.

:class:`ControlLoop` turns each :class:`~citytwin.store.base.ObservationFrame` the ingest
publishes on the bus (``observations/<feed>``) into the controller's readings — property, sensor
(the Thing key), dong and gu (the Thing's ``dong_code``/``gu_code`` bindings), time, value — and
calls :meth:`~citytwin.control.dispatcher.Controller.observe`; a second task calls
:meth:`~citytwin.control.dispatcher.Controller.pump` every ``pump_interval_s`` for
acknowledgements, retries and expiry. Values QC flagged as suspect (range, spike, stuck, drift,
future) are left out: a broken sensor must not send a spray truck.

The datastream → scope index comes from the twin's catalogue, re-read (in a worker thread) when a
frame names a datastream it has not seen — a new device — at most once per
``refresh_interval_s``; readings of datastreams still unknown after that are skipped and counted.

:func:`build_controller` assembles a controller from a control file as the server and
``citytwin control run`` do: audit log, the scenario registry's simulate-before-act checker, a
scenario runner, and an alert sink that publishes every alert on the bus (``alerts/<kind>``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from citytwin.bus.base import OBSERVATIONS, Bus, Subscription
from citytwin.control.alerts import Alert, log_alert
from citytwin.control.audit import AuditLog
from citytwin.control.checks import ScenarioChecker
from citytwin.control.config import ControlConfig, load_control, rules_path
from citytwin.control.dispatcher import READING_COLUMNS, Controller
from citytwin.control.rule_engine import dry_run
from citytwin.errors import StoreError
from citytwin.services import scenarios
from citytwin.store.base import ObservationFrame, Store
from citytwin.twin.state import SUSPECT, Twin

logger = logging.getLogger(__name__)

ALERTS = "alerts"
QUEUE_SIZE = 10_000  # frames the loop may fall behind by before the bus drops the oldest


@dataclass
class LoopStats:
    """What the loop has done (for logs, the API and tests)."""

    frames: int = 0
    readings: int = 0
    suspect: int = 0
    unknown: int = 0
    refreshes: int = 0
    dropped: int = 0


class ControlLoop:
    """Feed a :class:`Controller` from the bus; see the module docstring."""

    def __init__(
        self,
        controller: Controller,
        catalogue: Callable[[], pd.DataFrame],
        *,
        pump_interval_s: float = 0.5,
        refresh_interval_s: float = 2.0,
    ) -> None:
        self.controller = controller
        self._catalogue = catalogue
        self.pump_interval_s = pump_interval_s
        self.refresh_interval_s = refresh_interval_s
        self.stats = LoopStats()
        self._index = pd.DataFrame(columns=["property", "sensor", "dong", "gu"])
        self._refreshed_at = -float("inf")

    def refresh(self) -> None:
        """Re-read the datastream → (property, sensor, dong, gu) index from the twin."""
        self._index = scope_index(self._catalogue())
        self._refreshed_at = time.monotonic()
        self.stats.refreshes += 1
        logger.debug("control loop: %d datastreams indexed", len(self._index))

    def needs_refresh(self, frame: ObservationFrame) -> bool:
        """True when the frame names unknown datastreams and the index may be re-read now."""
        unknown = ~np.isin(frame.datastream_id, self._index.index.to_numpy())
        due = time.monotonic() - self._refreshed_at >= self.refresh_interval_s
        return bool(unknown.any()) and due

    def readings(self, frame: ObservationFrame) -> pd.DataFrame:
        """The controller's readings for one frame (suspect values and unknown streams left out)."""
        readings, suspect, unknown = scoped_readings(frame, self._index)
        self.stats.suspect += suspect
        self.stats.unknown += unknown
        return readings

    def handle(self, frame: ObservationFrame) -> list[Alert]:
        """One frame through the controller (refreshing the index first if it must)."""
        if self.needs_refresh(frame):
            self.refresh()
        readings = self.readings(frame)
        self.stats.frames += 1
        self.stats.readings += len(readings)
        return self.controller.observe(readings)

    def start(self, bus: Bus) -> asyncio.Task[None]:
        """Subscribe now (nothing published from here on is missed), consume in a task.

        Call from the event loop; cancel the task to stop.
        """
        subscription = bus.subscribe(f"{OBSERVATIONS}/#", maxsize=QUEUE_SIZE)
        return asyncio.create_task(self._consume(subscription), name="citytwin-control-loop")

    async def _consume(self, subscription: Subscription) -> None:
        pumping = asyncio.create_task(self._pump_forever())
        try:
            async for _topic, message in subscription:
                if not isinstance(message, ObservationFrame):
                    continue
                if self.needs_refresh(message):
                    await asyncio.to_thread(self.refresh)
                self.handle(message)
                if subscription.dropped > self.stats.dropped:
                    logger.warning(
                        "control loop fell behind: %d frames dropped by the bus",
                        subscription.dropped - self.stats.dropped,
                    )
                    self.stats.dropped = subscription.dropped
        finally:
            subscription.close()
            pumping.cancel()

    async def _pump_forever(self) -> None:
        while True:
            await asyncio.sleep(self.pump_interval_s)
            try:
                self.controller.pump()
            except Exception:  # the loop must outlive one bad pump; the error is in the log
                logger.exception("control loop: pump failed")


def scope_index(catalogue: pd.DataFrame) -> pd.DataFrame:
    """Datastream id → property, sensor (Thing key), dong and gu codes (the twin catalogue)."""
    index = pd.DataFrame(
        {
            "property": catalogue["observed_property"].to_numpy(),
            "sensor": catalogue["thing"].to_numpy(),
            "dong": catalogue["dong_code"].to_numpy(),
            "gu": catalogue["gu_code"].to_numpy(),
        },
        index=pd.Index(catalogue["datastream_id"].astype("int64"), name="datastream_id"),
    )
    return index[~index.index.duplicated()]


def scoped_readings(frame: ObservationFrame, index: pd.DataFrame) -> tuple[pd.DataFrame, int, int]:
    """Readings with their scopes, and how many were suspect and of unknown datastreams."""
    suspect = (frame.quality & SUSPECT) != 0
    known = np.isin(frame.datastream_id, index.index.to_numpy())
    keep = known & ~suspect
    scopes = index.loc[frame.datastream_id[keep]]
    readings = pd.DataFrame(
        {
            "property": scopes["property"].to_numpy(),
            "sensor": scopes["sensor"].to_numpy(),
            "dong": scopes["dong"].to_numpy(),
            "gu": scopes["gu"].to_numpy(),
            "time": pd.to_datetime(frame.phenomenon_time[keep], unit="us", utc=True),
            "value": frame.result[keep],
        },
        columns=list(READING_COLUMNS),
    )
    return readings, int((suspect & known).sum()), int((~known).sum())


def history_dry_run(
    config: ControlConfig, store: Store, *, start: datetime, end: datetime
) -> dict[str, pd.DataFrame]:
    """What every rule would have done between ``start`` and ``end``, from the stored history.

    The readings are those the live loop would have seen (suspect values left out), so the answer
    to "what would this rule have done last week?" is the loop's own.
    """
    catalogue = Twin(store).catalogue()
    wanted = {rule.when.property for rule in config.rules}
    index = scope_index(catalogue[catalogue["observed_property"].isin(wanted)])
    ids = index.index.astype(int).tolist()
    frame = store.observations(datastream_ids=ids, start=start, end=end) if ids else None
    if frame is None or not len(frame):
        readings = pd.DataFrame(columns=list(READING_COLUMNS))
    else:
        readings = scoped_readings(frame, index)[0]
    results = {}
    for rule in config.rules:
        part = readings[readings["property"] == rule.when.property]
        history = pd.DataFrame(
            {"scope_key": part[rule.when.scope], "time": part["time"], "value": part["value"]}
        ).dropna(subset=["scope_key"])
        history["time"] = pd.to_datetime(history["time"], utc=True)
        history["value"] = history["value"].astype("float64")
        results[rule.name] = dry_run(rule, history)
    return results


def bus_sink(bus: Bus) -> Callable[[Alert], None]:
    """An alert sink that publishes each alert on ``alerts/<kind>``."""

    def publish(alert: Alert) -> None:
        bus.publish(f"{ALERTS}/{alert.kind}", alert.to_dict())

    return publish


def build_controller(
    control_file: str | Path,
    *,
    audit: AuditLog | None,
    scenario_dir: str | Path = "scenarios",
    bus: Bus | None = None,
) -> Controller:
    """A controller for ``control_file``, wired to the audit log, checks, scenarios and bus."""
    config = load_control(control_file)
    root = Path(scenario_dir)
    sinks = [log_alert] if bus is None else [log_alert, bus_sink(bus)]

    def run_scenario(name: str) -> str:
        record = scenarios.run(root, name)
        return f"run {record.run_id}"

    controller = Controller(
        config,
        audit=audit,
        checker=ScenarioChecker(root),
        scenario_runner=run_scenario,
        sinks=sinks,
    )
    if audit is not None:
        try:
            entries = audit.entries()
        except StoreError as error:  # start anyway: `citytwin audit verify` tells the rest
            logger.warning("rule changes and tasks not restored: %s", error)
        else:
            controller.restore_rules(entries, newer_than=configured_at(control_file))
            controller.restore_tasks(entries)
    return controller


def configured_at(control_file: str | Path) -> datetime:
    """When the control configuration last changed: the later modification time of the
    control file and of the rules file it names (``rules: path``), in UTC."""
    path = Path(control_file)
    paths = [path]
    try:
        rules = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("rules")
    except (OSError, yaml.YAMLError, AttributeError):
        rules = None  # load_control has read it already; a race with an edit is harmless here
    if isinstance(rules, str):
        paths.append(rules_path(rules, path.parent))
    stamps = [p.stat().st_mtime for p in paths if p.exists()]
    return datetime.fromtimestamp(max(stamps, default=0.0), UTC)

// citytwin operator dashboard: map layers from the server's own API, the control panel, and the
// linkage table page (#linkage).
import "maplibre-gl/dist/maplibre-gl.css";
import "./style.css";
import { getAllFeatures, getJson } from "./api.js";
import { showSensorDetail } from "./detail.js";
import { showDistribution } from "./distribution.js";
import { currentLanguage, setLanguage, t } from "./i18n.js";
import { showLinkage } from "./linkage.js";
import { createMap, frame, idle, loaded, showBuildings, showDistricts, writeView } from "./map.js";
import { refreshPanel, setUpTokenForm } from "./panel.js";
import { armRelease } from "./release.js";
import { loadHistory, valuesAt } from "./replay.js";
import { armClosure, clearClosure, showTraffic } from "./traffic.js";
import { createSensorOverlay, renderLegend, SENSOR_RADIUS_PX, showSensors } from "./sensors.js";

const PANEL_REFRESH_MS = 15000;
const $ = (selector) => document.querySelector(selector);

// What the page shows, for people debugging it and for the browser tests.
const state = { ready: false, errors: [], sensorsDrawn: 0, sensorRadiusPx: SENSOR_RADIUS_PX };
window.__dashboard = state;
// The page's data between redraws: the sensors collection, the history and the slider's getter.
const current = { sensors: null, history: null, valueOf: null };

async function showProperty(map, overlay, property) {
  const level = $("#level").value;
  const [districts, sensors, history] = await Promise.all([
    getJson("/twin/districts", { level, property }),
    getJson("/twin/sensors", { property }),
    loadHistory($("#replay"), $("#replay-time"), property),
  ]);
  Object.assign(current, { sensors, history, valueOf: null });
  showDistricts(map, districts, property);
  renderLegend($("#sensor-legend"), property);
  state.property = property;
  state.replay = null;
  await Promise.all([drawSensors(map, overlay), drawDistribution(map)]);
}

async function drawSensors(map, overlay) {
  const property = $("#property").value;
  const onClick = (feature) => openDetail(feature, property);
  const options = { valueOf: current.valueOf, onClick };
  state.sensorsDrawn = await showSensors(overlay, current.sensors, property, options);
}

async function openDetail(feature, property) {
  state.sensorDetail = null;
  const points = await showSensorDetail($("#sensor-detail"), feature, property).catch(report);
  state.sensorDetail = { thing: feature.properties.thing, points };
}

async function drawDistribution(map) {
  const band = $("#distribution").value;
  state.distribution = null;
  const layer = await showDistribution(map, $("#gradient"), $("#property").value, band);
  await idle(map);
  state.distribution = layer;
}

async function drawTraffic(map) {
  state.traffic = null;
  const visible = $("#traffic").value === "flows";
  if (!visible) clearClosure(map); // turning traffic off ends the closure scenario too
  const shown = await showTraffic(map, visible, $("#traffic-legend"));
  await idle(map);
  state.traffic = shown ?? { links: 0 };
}

async function replayTo(map, overlay, index) {
  current.valueOf = valuesAt(current.history, index, $("#replay-time"));
  await drawSensors(map, overlay);
  state.replay = current.valueOf ? { index, time: current.history.times[index] } : null;
}

async function start() {
  setLanguage(currentLanguage());
  const config = await getJson("/ui/config.json");
  const map = createMap($("#map"));
  window.__dashboardMap = map;
  const overlay = createSensorOverlay(map);
  const buildings = getAllFeatures("buildings");
  await loaded(map);
  const collection = await buildings;
  showBuildings(map, collection);
  frame(map, collection);
  state.buildings = collection.features.length;
  await showProperty(map, overlay, $("#property").value);
  wireControls(map, overlay, config);
  if (window.location.hash === "#linkage") await openView(map, "linkage");
  await idle(map);
  const view = { zoom: map.getZoom(), pitch: map.getPitch(), bounds: map.getBounds().toArray() };
  Object.assign(state, view, { ready: true });
}

function wireControls(map, overlay, config) {
  const redraw = () => showProperty(map, overlay, $("#property").value).catch(report);
  const panel = () => refreshPanel($("#tasks"), $("#alerts"), config).catch(report);
  $("#property").addEventListener("change", redraw);
  $("#level").addEventListener("change", redraw);
  $("#distribution").addEventListener("change", () => drawDistribution(map).catch(report));
  $("#replay").addEventListener("input", (event) =>
    replayTo(map, overlay, Number(event.target.value)).catch(report),
  );
  $("#traffic").addEventListener("change", () => drawTraffic(map).catch(report));
  $("#closure").addEventListener("click", async () => {
    state.closure = null;
    $("#traffic").value = "flows";
    await drawTraffic(map).catch(report);
    state.closure = await armClosure(map, $("#closure-status")).catch(report);
  });
  $("#release").addEventListener("click", async () => {
    state.release = null;
    state.release = await armRelease(map, $("#release-status")).catch(report);
  });
  for (const tab of document.querySelectorAll("[data-view]")) {
    tab.addEventListener("click", () => openView(map, tab.dataset.view).catch(report));
  }
  $("#language").addEventListener("click", () => {
    setLanguage(currentLanguage() === "ko" ? "en" : "ko");
    redraw();
    panel();
    if (document.body.dataset.view === "linkage") openView(map, "linkage").catch(report);
  });
  setUpTokenForm($("#token-form"));
  panel();
  setInterval(panel, PANEL_REFRESH_MS);
}

// "map" or "linkage": the linkage page (#linkage) replaces the map; back on the map, the URL
// shows its view again.
async function openView(map, view) {
  document.body.dataset.view = view;
  for (const tab of document.querySelectorAll("[data-view]")) {
    tab.setAttribute("aria-selected", String(tab.dataset.view === view));
  }
  if (view === "linkage") {
    history.replaceState(null, "", "#linkage");
    state.linkageRows = null;
    state.linkageRows = await showLinkage($("#linkage"));
  } else {
    map.resize();
    writeView(map);
  }
}

function report(error) {
  state.errors.push(String(error?.message ?? error));
  $("#status").textContent = `${t("loadFailed")}: ${error?.message ?? error}`;
  console.error(error);
}

start().catch(report);

// citytwin operator dashboard: map layers from the server's own API plus the control panel.
import "maplibre-gl/dist/maplibre-gl.css";
import "./style.css";
import { getAllFeatures, getJson } from "./api.js";
import { currentLanguage, setLanguage, t } from "./i18n.js";
import { createMap, frame, idle, loaded, showBuildings, showDistricts } from "./map.js";
import { refreshPanel, setUpTokenForm } from "./panel.js";
import { createSensorOverlay, renderLegend, SENSOR_RADIUS_PX, showSensors } from "./sensors.js";

const PANEL_REFRESH_MS = 15000;
const $ = (selector) => document.querySelector(selector);

// What the page shows, for people debugging it and for the browser tests.
const state = { ready: false, errors: [], sensorsDrawn: 0, sensorRadiusPx: SENSOR_RADIUS_PX };
window.__dashboard = state;

async function showProperty(map, overlay, property) {
  const level = $("#level").value;
  const [districts, sensors] = await Promise.all([
    getJson("/twin/districts", { level, property }),
    getJson("/twin/sensors", { property }),
  ]);
  showDistricts(map, districts, property);
  renderLegend($("#legend"), property);
  state.sensorsDrawn = await showSensors(overlay, sensors, property);
  state.property = property;
}

async function start() {
  setLanguage(currentLanguage());
  const config = await getJson("/ui/config.json");
  const map = createMap($("#map"));
  const overlay = createSensorOverlay(map);
  const buildings = getAllFeatures("buildings");
  await loaded(map);
  const collection = await buildings;
  showBuildings(map, collection);
  frame(map, collection);
  state.buildings = collection.features.length;
  await showProperty(map, overlay, $("#property").value);
  wireControls(map, overlay, config);
  await idle(map);
  const view = { zoom: map.getZoom(), pitch: map.getPitch(), bounds: map.getBounds().toArray() };
  Object.assign(state, view, { ready: true });
}

function wireControls(map, overlay, config) {
  const redraw = () => showProperty(map, overlay, $("#property").value).catch(report);
  const panel = () => refreshPanel($("#tasks"), $("#alerts"), config).catch(report);
  $("#property").addEventListener("change", redraw);
  $("#level").addEventListener("change", redraw);
  $("#language").addEventListener("click", () => {
    setLanguage(currentLanguage() === "ko" ? "en" : "ko");
    redraw();
    panel();
  });
  setUpTokenForm($("#token-form"));
  panel();
  setInterval(panel, PANEL_REFRESH_MS);
}

function report(error) {
  state.errors.push(String(error?.message ?? error));
  $("#status").textContent = `${t("loadFailed")}: ${error?.message ?? error}`;
  console.error(error);
}

start().catch(report);

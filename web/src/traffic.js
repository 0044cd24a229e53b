// Traffic: the city model's peak-hour flows (GET /layers/traffic) as lines coloured by
// volume/capacity and as wide as their volume, and the road-closure scenario: arm it, click a
// street, and GET /layers/closure shows where its traffic goes (red more, blue less, the closed
// street dashed black) with the change in vehicle-hours.
import { getJson } from "./api.js";
import { t } from "./i18n.js";

const FLOWS = "traffic";
const CHANGES = "closure";
// volume/capacity bands: free, busy, near capacity, over capacity
export const VC_COLOURS = [[0, "#1a9850"], [0.5, "#fee08b"], [0.8, "#fc8d59"], [1, "#d73027"]];
const CHANGE_COLOURS = [-500, "#2166ac", -50, "#92c5de", 0, "#f7f7f7", 50, "#f4a582", 500, "#b2182b"];
const HIT_PX = 6;
const FLOW_OPACITY = ["case", [">=", ["get", "volume"], 1], 0.95, 0.25]; // unused roads faint

let flows = null; // the last /layers/traffic answer, fetched once per page
let armed = false; // a click is awaited: a second press of the button waits for the same one

export async function showTraffic(map, visible, legendElement) {
  renderLegend(legendElement, visible);
  if (!visible) {
    setVisible(map, [`${FLOWS}-lines`], false);
    return null;
  }
  flows ??= await getJson("/layers/traffic");
  if (!map.getSource(FLOWS)) {
    map.addSource(FLOWS, { type: "geojson", data: flows });
    map.addLayer({ id: `${FLOWS}-lines`, type: "line", source: FLOWS,
      layout: { "line-cap": "round" },
      paint: {
        "line-color": ["step", ["get", "vc"], ...VC_COLOURS.flat().slice(1)],
        "line-width": byZoom(["interpolate", ["linear"], ["get", "volume"], 0, 0.5, 1000, 2, 5000, 6]),
        "line-opacity": FLOW_OPACITY,
      } });
  }
  setVisible(map, [`${FLOWS}-lines`], true);
  return { links: flows.features.length, vehicleHours: flows.vehicleHours, trips: flows.trips };
}

function renderLegend(element, visible) {
  if (!element) return;
  element.hidden = !visible;
  const bands = VC_COLOURS.map(([low, colour], i) => {
    const high = VC_COLOURS[i + 1]?.[0];
    const range = high === undefined ? `≥ ${low}` : `${low}–${high}`;
    return `<span class="swatch" style="background:${colour}"></span>${range}`;
  });
  element.innerHTML = `<div>${t("trafficLegend")}</div><div>${bands.join(" ")}</div>`;
}

// Widths in pixels at zoom 14, halved per zoom level out (to a floor at 11), doubled per level in.
function byZoom(width) {
  return ["interpolate", ["exponential", 2], ["zoom"], 11, ["*", 0.35, width], 14, width,
    17, ["*", 4, width]];
}

function setVisible(map, ids, visible) {
  for (const id of ids) {
    if (map.getLayer(id)) map.setLayoutProperty(id, "visibility", visible ? "visible" : "none");
  }
}

// The next click on a street closes it; resolves to the closure's summary.
export async function armClosure(map, statusElement) {
  if (armed) return null;
  armed = true;
  try {
    return await closeClicked(map, statusElement);
  } finally {
    armed = false;
  }
}

async function closeClicked(map, statusElement) {
  map.getCanvas().style.cursor = "crosshair";
  statusElement.textContent = t("clickToClose");
  const link = await new Promise((resolve) => {
    const pick = ({ point }) => {
      const box = [[point.x - HIT_PX, point.y - HIT_PX], [point.x + HIT_PX, point.y + HIT_PX]];
      const [hit] = map.queryRenderedFeatures(box, { layers: [`${FLOWS}-lines`] });
      if (!hit) return void (statusElement.textContent = t("noRoadHere"));
      map.off("click", pick);
      resolve(hit.properties);
    };
    map.on("click", pick);
  });
  map.getCanvas().style.cursor = "";
  statusElement.textContent = `${link.name ?? link.link_id}: ${t("running")}`;
  const result = await getJson("/layers/closure", { link: link.link_id });
  drawChanges(map, result);
  statusElement.textContent = describe(link, result);
  const changed = result.features.filter((f) => !f.properties.closed);
  return { closed: result.closed, closedLinks: result.closedLinks, changed: changed.length,
    vehicleHoursChange: result.vehicleHoursChange };
}

function describe(link, result) {
  const sign = result.vehicleHoursChange >= 0 ? "+" : "";
  return `${t("closed")} ${link.name ?? ""} (${result.closed.join(", ")}) · ${t("vehicleHours")} ` +
    `${result.vehicleHoursBase} → ${result.vehicleHours} (${sign}${result.vehicleHoursChange})`;
}

function drawChanges(map, collection) {
  // the flows fade behind the changes: both use red, for congestion and for added traffic
  map.setPaintProperty(`${FLOWS}-lines`, "line-opacity", 0.15);
  const source = map.getSource(CHANGES);
  if (source) return source.setData(collection);
  map.addSource(CHANGES, { type: "geojson", data: collection });
  map.addLayer({ id: `${CHANGES}-lines`, type: "line", source: CHANGES,
    filter: ["!", ["get", "closed"]], layout: { "line-cap": "round" },
    paint: {
      "line-color": ["interpolate", ["linear"], ["get", "volume_change"], ...CHANGE_COLOURS],
      "line-width": byZoom(["interpolate", ["linear"], ["abs", ["get", "volume_change"]], 0, 1.5, 1000, 7]),
    } });
  map.addLayer({ id: `${CHANGES}-closed`, type: "line", source: CHANGES,
    filter: ["get", "closed"],
    paint: { "line-color": "#000000", "line-width": byZoom(6), "line-dasharray": [1, 0.6] } });
}

export function clearClosure(map) {
  if (map.getLayer(`${FLOWS}-lines`)) {
    map.setPaintProperty(`${FLOWS}-lines`, "line-opacity", FLOW_OPACITY);
  }
  for (const id of [`${CHANGES}-closed`, `${CHANGES}-lines`]) if (map.getLayer(id)) map.removeLayer(id);
  if (map.getSource(CHANGES)) map.removeSource(CHANGES);
}

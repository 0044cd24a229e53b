// The scenario runner: arm it, click a point, and a chemical release there (GET /layers/release,
// the sensors' wind) is drawn as its AEGL-1/2/3 zones, outer to inner.
import { getJson } from "./api.js";
import { t } from "./i18n.js";

const SOURCE = "release";
export const ZONE_COLOURS = { "AEGL-1": "#ffd23f", "AEGL-2": "#ff8c1a", "AEGL-3": "#e0115f" };

// The next click on the map runs the release; resolves to the result's summary.
export function armRelease(map, statusElement) {
  map.getCanvas().style.cursor = "crosshair";
  statusElement.textContent = t("clickToRelease");
  return new Promise((resolve, reject) => {
    map.once("click", ({ lngLat }) => {
      map.getCanvas().style.cursor = "";
      runRelease(map, statusElement, lngLat).then(resolve, reject);
    });
  });
}

async function runRelease(map, statusElement, { lng, lat }) {
  statusElement.textContent = t("running");
  const zones = await getJson("/layers/release", { lon: lng.toFixed(6), lat: lat.toFixed(6) });
  drawZones(map, zones);
  const wind = `${zones.windSpeed.toFixed(1)} m/s ${Math.round(zones.windDirection)}°`;
  statusElement.textContent =
    `${zones.substance} ${zones.rateGramsPerSecond} g/s · ${t("wind")} ${wind} · ` +
    `${t("stability")} ${zones.stability} · ` +
    `${t("exposed")} ${zones.buildingsInAegl1 ?? "–"} · ${t("residents")} ${zones.residentsInAegl1 ?? "–"}`;
  return { zones: zones.features.map((f) => f.properties.level), source: zones.source };
}

function drawZones(map, collection) {
  const source = map.getSource(SOURCE);
  if (source) return source.setData(collection);
  map.addSource(SOURCE, { type: "geojson", data: collection });
  const colour = ["match", ["get", "level"], ...Object.entries(ZONE_COLOURS).flat(), "#ffffff"];
  map.addLayer({ id: "release-fill", type: "fill", source: SOURCE,
    paint: { "fill-color": colour, "fill-opacity": 0.45 } });
  map.addLayer({ id: "release-line", type: "line", source: SOURCE,
    paint: { "line-color": colour, "line-width": 1.5 } });
}

export function clearRelease(map) {
  for (const id of ["release-line", "release-fill"]) if (map.getLayer(id)) map.removeLayer(id);
  if (map.getSource(SOURCE)) map.removeSource(SOURCE);
}

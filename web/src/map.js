// The MapLibre map: a plain background (no tiles, no fonts: the city layers ARE the map),
// the district choropleth and the buildings as 3D extrusions.
import { LngLatBounds, Map as MapLibreMap } from "maplibre-gl";
import { BUILDING_COLOUR, districtFill } from "./colours.js";

const STYLE = {
  version: 8,
  sources: {},
  layers: [{ id: "background", type: "background", paint: { "background-color": "#161b22" } }],
};

// The view in the URL, #zoom/lat/lon[/bearing[/pitch]] (MapLibre's format), so that a view can
// be bookmarked or shared. Kept here rather than by MapLibre's `hash: true`, which would also
// overwrite other pages' hashes (#linkage).
const openedOnView = parseView(window.location.hash);

export function createMap(container) {
  const map = new MapLibreMap({
    container,
    style: STYLE,
    center: openedOnView?.center ?? [127.0, 37.55],
    zoom: openedOnView?.zoom ?? 11,
    bearing: openedOnView?.bearing ?? 0,
    pitch: openedOnView?.pitch ?? 45,
    attributionControl: false,
  });
  map.on("moveend", () => {
    if (!window.location.hash.startsWith("#linkage")) writeView(map);
  });
  return map;
}

function parseView(hash) {
  const numbers = hash.slice(1).split("/").map(Number);
  if (numbers.length < 3 || numbers.some((n) => !Number.isFinite(n))) return null;
  const [zoom, lat, lon, bearing = 0, pitch = 0] = numbers;
  return { zoom, center: [lon, lat], bearing, pitch };
}

export function writeView(map) {
  const { lng, lat } = map.getCenter();
  const digits = Math.max(0, Math.ceil(Math.log10(2 ** map.getZoom() / 360 * 512 * 2)));
  const view = [map.getZoom().toFixed(2).replace(/\.?0+$/, ""), lat.toFixed(digits),
    lng.toFixed(digits), Math.round(map.getBearing()), Math.round(map.getPitch())];
  history.replaceState(history.state, "", `#${view.join("/")}`);
}

export function loaded(map) {
  return map.loaded() ? Promise.resolve() : new Promise((ok) => map.once("load", ok));
}

export function idle(map) {
  return new Promise((ok) => {
    map.once("idle", ok);
    map.triggerRepaint();
  });
}

export function showDistricts(map, collection, property) {
  const source = map.getSource("districts");
  if (source) source.setData(collection);
  else map.addSource("districts", { type: "geojson", data: collection });
  if (!map.getLayer("districts-fill")) {
    // under the buildings: the choropleth is the ground the city stands on
    const below = map.getLayer("buildings") ? "buildings" : undefined;
    map.addLayer({ id: "districts-fill", type: "fill", source: "districts", paint: {} }, below);
    map.addLayer(
      {
        id: "districts-line",
        type: "line",
        source: "districts",
        paint: { "line-color": "#6b7785", "line-width": 0.8 },
      },
      below,
    );
  }
  map.setPaintProperty("districts-fill", "fill-color", districtFill(property));
  map.setPaintProperty("districts-fill", "fill-opacity", 0.85);
}

export function showBuildings(map, collection) {
  map.addSource("buildings", { type: "geojson", data: collection });
  map.addLayer({
    id: "buildings",
    type: "fill-extrusion",
    source: "buildings",
    paint: {
      "fill-extrusion-color": BUILDING_COLOUR,
      "fill-extrusion-height": ["coalesce", ["get", "height"], 10],
      "fill-extrusion-base": ["coalesce", ["get", "min_height"], 0],
      "fill-extrusion-opacity": 0.95,
    },
  });
}

// Frame the data unless the URL already names a view (#zoom/lat/lon/…).
export function frame(map, collection) {
  if (openedOnView) return;
  const bounds = new LngLatBounds();
  for (const feature of collection.features) extend(bounds, feature.geometry?.coordinates);
  if (!bounds.isEmpty()) map.fitBounds(bounds, { padding: 30, duration: 0, pitch: 45 });
}

function extend(bounds, coordinates) {
  if (!Array.isArray(coordinates)) return;
  if (typeof coordinates[0] === "number") bounds.extend(coordinates);
  else for (const part of coordinates) extend(bounds, part);
}

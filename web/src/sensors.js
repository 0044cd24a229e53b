// Live sensors as a deck.gl ScatterplotLayer on the MapLibre map (MapboxOverlay), coloured by
// the latest value of the chosen property, with a legend.
import { ScatterplotLayer } from "@deck.gl/layers";
import { MapboxOverlay } from "@deck.gl/mapbox";
import { legendEntries, NO_DATA_COLOUR, sensorColour } from "./colours.js";
import { t } from "./i18n.js";

export const SENSOR_RADIUS_PX = 6;

export function createSensorOverlay(map) {
  const overlay = new MapboxOverlay({ interleaved: false, layers: [], getTooltip: tooltip });
  map.addControl(overlay);
  return overlay;
}

// Resolves after deck.gl has drawn the new layer once. valueOf(thing) replaces the latest
// values (the time slider); onClick(feature) opens a sensor's detail.
export function showSensors(overlay, collection, property, { valueOf = null, onClick } = {}) {
  const value = (f) =>
    valueOf ? valueOf(f.properties.thing) : f.properties.latest?.[property]?.value;
  const located = collection.features.filter((f) => f.geometry?.type === "Point");
  return new Promise((drawn) => {
    const layer = new ScatterplotLayer({
      id: "sensors",
      data: located,
      getPosition: (f) => f.geometry.coordinates,
      getFillColor: (f) => sensorColour(property, value(f)),
      getLineColor: [15, 18, 22],
      getRadius: SENSOR_RADIUS_PX,
      radiusUnits: "pixels",
      billboard: true, // round discs facing the camera, whatever the pitch
      stroked: true,
      lineWidthUnits: "pixels",
      getLineWidth: 1,
      pickable: true,
      onClick: ({ object }) => object && onClick?.(object),
      updateTriggers: { getFillColor: [property, valueOf] },
    });
    overlay.setProps({ layers: [layer], onAfterRender: () => drawn(located.length) });
  }).then((count) => {
    overlay.setProps({ onAfterRender: () => {} }); // deck.gl calls it unchecked
    return count;
  });
}

function tooltip({ object }) {
  if (!object) return null;
  const lines = [object.properties.name ?? object.id, object.properties.dong ?? ""];
  for (const [property, latest] of Object.entries(object.properties.latest ?? {})) {
    lines.push(`${t(property)}: ${latest.value ?? "–"} ${latest.unit ?? ""}`);
  }
  return lines.filter(Boolean).join("\n");
}

export function renderLegend(element, property) {
  element.replaceChildren(
    heading(`${t("sensors")} · ${t(property)}`),
    ...legendEntries(property).map(({ colour, label }) => swatch(colour, label)),
    swatch(`rgb(${NO_DATA_COLOUR.join(",")})`, t("noData")),
  );
}

function heading(text) {
  const element = document.createElement("h3");
  element.textContent = text;
  return element;
}

function swatch(colour, label) {
  const row = document.createElement("div");
  row.className = "legend-row";
  const dot = document.createElement("span");
  dot.className = "legend-dot";
  dot.style.background = colour;
  row.append(dot, document.createTextNode(label));
  return row;
}

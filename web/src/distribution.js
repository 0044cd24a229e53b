// The distribution layer: ordinary kriging of the chosen property (GET /layers/distribution) as
// an image pinned by its four corners, or its kriging standard deviation (the uncertainty),
// drawn between the district choropleth and the buildings, with a gradient legend.
import { getJson } from "./api.js";
import { t } from "./i18n.js";

const SOURCE = "distribution";
export const DISTRIBUTION_OPACITY = 0.8;

// band: "off", "mean" or "sd". Resolves to the layer's description (null when off).
export async function showDistribution(map, legendElement, property, band) {
  removeDistribution(map);
  if (band === "off") {
    legendElement.replaceChildren();
    return null;
  }
  const layer = await getJson("/layers/distribution", { property, band });
  map.addSource(SOURCE, { type: "image", url: layer.image, coordinates: layer.coordinates });
  const below = map.getLayer("buildings") ? "buildings" : undefined;
  map.addLayer(
    { id: SOURCE, type: "raster", source: SOURCE, paint: { "raster-opacity": DISTRIBUTION_OPACITY,
      "raster-resampling": "nearest", "raster-fade-duration": 0 } },
    below,
  );
  renderGradient(legendElement, layer, property);
  return { band, coordinates: layer.coordinates, legend: layer.legend, sensors: layer.sensors };
}

function removeDistribution(map) {
  if (map.getLayer(SOURCE)) map.removeLayer(SOURCE);
  if (map.getSource(SOURCE)) map.removeSource(SOURCE);
}

function renderGradient(element, layer, property) {
  const { colours, min, max, unit } = layer.legend;
  const heading = document.createElement("h3");
  heading.textContent = `${t(layer.band === "sd" ? "krigingSd" : "kriging")} · ${t(property)}`;
  const bar = document.createElement("div");
  bar.className = "gradient";
  bar.style.background = `linear-gradient(to right, ${colours.join(", ")})`;
  const scale = document.createElement("div");
  scale.className = "gradient-scale";
  for (const value of [min, max]) {
    const label = document.createElement("span");
    label.textContent = `${value.toFixed(1)} ${unit}`;
    scale.append(label);
  }
  element.replaceChildren(heading, bar, scale);
}

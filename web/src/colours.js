// Value classes per property: the sensor circles (green → red, as on Korean air-quality maps)
// and the district choropleth (steel blues, so that it never looks like a sensor or a building).
export const BUILDING_COLOUR = "#7b61ff";
export const NO_DATA_COLOUR = [138, 148, 160];
const SENSOR_RAMP = ["#1a9850", "#a6d96a", "#fee08b", "#f46d43", "#d73027"];
const DISTRICT_RAMP = ["#24364a", "#2f4d6b", "#3b648c", "#4a7cab", "#5f95c6"];

// Upper bounds of the first classes; the last class is open-ended.
// pm25: Korean Ministry of Environment PM2.5 bands (good ≤15, moderate ≤35, bad ≤75 µg/m³).
export const CLASSES = {
  pm25: { unit: "µg/m³", breaks: [15, 35, 75, 100] },
  noise: { unit: "dB(A)", breaks: [50, 55, 65, 70] },
  air_temperature: { unit: "°C", breaks: [0, 10, 20, 30] },
};

export function classOf(property, value) {
  if (value === null || value === undefined || Number.isNaN(value)) return -1;
  const { breaks } = CLASSES[property];
  const index = breaks.findIndex((upper) => value <= upper);
  return index === -1 ? breaks.length : index;
}

export function sensorColour(property, value) {
  const index = classOf(property, value);
  return index === -1 ? NO_DATA_COLOUR : hexToRgb(SENSOR_RAMP[index]);
}

export function legendEntries(property) {
  const { breaks, unit } = CLASSES[property];
  return SENSOR_RAMP.map((colour, i) => {
    const low = i === 0 ? null : breaks[i - 1];
    const high = i < breaks.length ? breaks[i] : null;
    const label = low === null ? `≤ ${high}` : high === null ? `> ${low}` : `${low} – ${high}`;
    return { colour, label: `${label} ${unit}` };
  });
}

// A MapLibre "step" expression over the district mean, transparent where there is no data.
export function districtFill(property) {
  const { breaks } = CLASSES[property];
  // a class includes its upper bound (≤ 15); "step" starts a class at its stop (≥), hence ε
  const steps = breaks.flatMap((upper, i) => [upper + 1e-9, DISTRICT_RAMP[i + 1]]);
  return [
    "case",
    ["==", ["get", "mean"], null],
    "rgba(0,0,0,0)",
    ["step", ["get", "mean"], DISTRICT_RAMP[0], ...steps],
  ];
}

function hexToRgb(hex) {
  const n = Number.parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

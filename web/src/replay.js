// The time slider: the sensors' hourly means over the stored history (GET /layers/history),
// replayed hour by hour on the sensor layer. The last position is "live" (the latest values).
import { getJson } from "./api.js";
import { t } from "./i18n.js";

// Loads the history and sets the slider's range; resolves to the history.
export async function loadHistory(slider, label, property) {
  const history = await getJson("/layers/history", { property });
  const rows = new Map(history.things.map((thing, i) => [thing, history.values[i]]));
  slider.min = 0;
  slider.max = history.times.length; // one past the last hour: live
  slider.value = slider.max;
  label.textContent = t("live");
  return { times: history.times, rows };
}

// The value getter for hour `index` (null: live, the layer's own latest values).
export function valuesAt(history, index, label) {
  if (index >= history.times.length) {
    label.textContent = t("live");
    return null;
  }
  label.textContent = `${history.times[index].slice(0, 16).replace("T", " ")} UTC`;
  return (thing) => history.rows.get(thing)?.[index] ?? null;
}

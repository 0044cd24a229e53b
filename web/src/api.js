// The server's own API: relative URLs, so the page works under any prefix (/ui/ → ../).
const ROOT = new URL("..", document.baseURI);
const TOKEN_KEY = "citytwin.token";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function apiUrl(path, params = {}) {
  const url = new URL(path.replace(/^\//, ""), ROOT);
  for (const [key, value] of Object.entries(params)) url.searchParams.set(key, value);
  return url;
}

async function request(path, { params, method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(apiUrl(path, params), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const payload = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new ApiError(response.status, payload.message ?? payload.detail ?? response.statusText);
  }
  return payload;
}

export const getJson = (path, params) => request(path, { params });
export const postJson = (path, body) => request(path, { method: "POST", body });

// OGC API – Features paging: follow rel=next until the collection is complete.
export async function getAllFeatures(collection, { limit = 10000 } = {}) {
  const features = [];
  let page = await getJson(`/collections/${collection}/items`, { limit });
  features.push(...page.features);
  for (let next = nextLink(page); next; next = nextLink(page)) {
    const response = await fetch(next, { headers: { Accept: "application/geo+json" } });
    if (!response.ok) throw new ApiError(response.status, `${next}: ${response.statusText}`);
    page = await response.json();
    features.push(...page.features);
  }
  return { type: "FeatureCollection", features };
}

function nextLink(page) {
  return (page.links ?? []).find((link) => link.rel === "next")?.href;
}

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) ?? "";
}

export function setToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token.trim());
}

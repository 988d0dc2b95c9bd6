// The console's one way to the REST API: same origin, the session cookie, the console's
// language for translated error messages, and the header the server's CSRF guard asks of
// every cookie-authenticated change.

import { language } from "./i18n.js";

export const API = "/api/v1";

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = (body && body.code) || "";
    this.body = body || {};
  }
}

let onUnauthorized = () => {};

export function whenUnauthorized(handler) {
  onUnauthorized = handler;
}

export function apiUrl(path, query) {
  const url = new URL(API + path, location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") {
      url.searchParams.set(name, String(value));
    }
  }
  return url;
}

export async function api(path, { method = "GET", body, query, signal } = {}) {
  const headers = { Accept: "application/json", "Accept-Language": language() };
  if (method !== "GET") headers["X-Wulian-Console"] = "1";
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(apiUrl(path, query), {
    method, headers, signal, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 204) return null;
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    payload = null;
  }
  if (!response.ok) {
    // a session that ended mid-visit sends the user back to the login page, once
    if (response.status === 401 && !path.startsWith("/auth/")) onUnauthorized();
    throw new ApiError(response.status, payload);
  }
  return payload;
}

// Alarm ids hold "/" ("rule/subject/raised"): one path segment, percent-encoded.
export function alarmPath(id, action) {
  return `/alarms/${encodeURIComponent(id)}${action ? `/${action}` : ""}`;
}

// Every page of a list endpoint that answers {data: [...]} with limit/offset.
export async function allPages(path, query, { signal, page = 1000, max = 20000 } = {}) {
  const rows = [];
  for (let offset = 0; offset < max; offset += page) {
    const got = await api(path, { query: { ...query, limit: page, offset }, signal });
    rows.push(...got.data);
    if (got.data.length < page) break;
  }
  return rows;
}

// The console's only way to the API: the key from session storage, sent as a bearer header.
// The key never goes into a URL: event streams are read with fetch() (see events.js), not EventSource.

const KEY_NAME = "assetgen.apiKey";

export const session = {
  get key() {
    return sessionStorage.getItem(KEY_NAME) || "";
  },
  signIn(key) {
    sessionStorage.setItem(KEY_NAME, key);
  },
  signOut() {
    sessionStorage.removeItem(KEY_NAME);
  },
};

/** A refusal or failure of the API, with its status and its own words. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** The bearer header of the signed-in key. */
export function authorization() {
  return { Authorization: `Bearer ${session.key}` };
}

async function errorOf(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && typeof body.error === "string") message = body.error;
  } catch {
    // not JSON: the status line says it
  }
  return new ApiError(response.status, message);
}

/** Tells the app the key was refused, so it asks for another. */
function refused(error) {
  if (error.status === 401) window.dispatchEvent(new CustomEvent("assetgen:unauthenticated"));
  return error;
}

/** Whether the API accepts a key (before it is kept): rejects with the API's refusal. */
export async function checkKey(key) {
  let response;
  try {
    response = await fetch("/api/boxes/?page_size=1", { headers: { Authorization: `Bearer ${key}` } });
  } catch (error) {
    throw new ApiError(0, `the gateway cannot be reached (${error.message})`);
  }
  if (!response.ok) throw await errorOf(response);
}

/** Calls the API; resolves with the JSON answer, rejects with an ApiError worded as the API words it. */
export async function api(method, path, body) {
  const headers = { ...authorization(), Accept: "application/json" };
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(0, `the gateway cannot be reached (${error.message})`);
  }
  if (!response.ok) throw refused(await errorOf(response));
  if (response.status === 204) return null;
  return response.json();
}

/** The query string of defined, non-empty values. */
export function query(values) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(values)) {
    if (value !== undefined && value !== null && value !== "") params.set(name, value);
  }
  const text = params.toString();
  return text ? `?${text}` : "";
}

/** Uploads a file into a box, reporting progress (0..1); resolves with the new asset. */
export function uploadFile(boxId, file, onProgress) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", `/api/boxes/${encodeURIComponent(boxId)}/upload/`);
    request.setRequestHeader("Authorization", authorization().Authorization);
    request.responseType = "json";
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    request.addEventListener("load", () => {
      if (request.status === 201) {
        resolve(request.response);
        return;
      }
      const message = request.response && request.response.error;
      reject(refused(new ApiError(request.status, message || `${request.status} ${request.statusText}`)));
    });
    request.addEventListener("error", () => reject(new ApiError(0, "the upload was interrupted")));
    const form = new FormData();
    form.append("file", file, file.name);
    request.send(form);
  });
}

/**
 * What the key may do. Today every key may do everything; with scoped keys the API answers 403 to a
 * route the key may not use, so two harmless probes find out: listing providers (admin), and asking
 * for a generation in a box that does not exist (write: 403 without the scope, 404 with it).
 */
export async function probeCapabilities() {
  const status = async (method, path, body) => {
    try {
      await api(method, path, body);
      return 200;
    } catch (error) {
      return error.status;
    }
  };
  const [admin, write] = await Promise.all([
    status("GET", "/api/providers/"),
    status("POST", "/api/boxes/capability-probe/generate/", {}),
  ]);
  return { admin: admin === 200, write: write !== 403 && write !== 401 };
}

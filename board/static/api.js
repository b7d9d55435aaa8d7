// The REST routes of the board's own origin, with the token (if any) from
// session storage: never in a URL, never in local storage.

const tokenKey = "callledger.token";

export function token() {
  return sessionStorage.getItem(tokenKey) || "";
}

export function setToken(value) {
  if (value) {
    sessionStorage.setItem(tokenKey, value);
  } else {
    sessionStorage.removeItem(tokenKey);
  }
}

// ApiError is a refused or failed request: the gRPC status the API answered
// with, or a network failure (code 14, unavailable).
export class ApiError extends Error {
  constructor(httpStatus, code, message) {
    super(message);
    this.httpStatus = httpStatus;
    this.code = code;
  }
  get unauthenticated() {
    return this.httpStatus === 401 || this.code === 16;
  }
}

function headers(extra) {
  const h = new Headers(extra);
  const t = token();
  if (t) {
    h.set("Authorization", "Bearer " + t);
  }
  return h;
}

async function failure(resp) {
  let code = 0;
  let message = resp.status + " " + resp.statusText;
  try {
    const body = await resp.json();
    const st = body.error || body;
    if (typeof st.code === "number") code = st.code;
    if (st.message) message = st.message;
  } catch {
    // not JSON: keep the HTTP status
  }
  return new ApiError(resp.status, code, message);
}

async function request(method, path, body) {
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers: headers(body ? { "Content-Type": "application/json" } : {}),
      body: body ? JSON.stringify(body) : undefined,
      cache: "no-store",
    });
  } catch (e) {
    throw new ApiError(0, 14, "the server cannot be reached (" + e.message + ")");
  }
  if (!resp.ok) {
    throw await failure(resp);
  }
  return resp.json();
}

export const get = (path) => request("GET", path);
export const post = (path, body) => request("POST", path, body);

// watch reads a newline-delimited JSON stream (WatchCalls) and calls onMessage
// with each result until the stream ends or signal aborts. It resolves when
// the server ends the stream and rejects with an ApiError when it fails.
export async function watch(path, signal, onMessage) {
  let resp;
  try {
    resp = await fetch(path, { headers: headers({ Accept: "application/x-ndjson" }), signal, cache: "no-store" });
  } catch (e) {
    if (signal.aborted) return;
    throw new ApiError(0, 14, "the server cannot be reached (" + e.message + ")");
  }
  if (!resp.ok) {
    throw await failure(resp);
  }
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  for (;;) {
    let chunk;
    try {
      chunk = await reader.read();
    } catch (e) {
      if (signal.aborted) return;
      throw new ApiError(0, 14, "the watch stream broke (" + e.message + ")");
    }
    if (chunk.done) return;
    buffered += chunk.value;
    let nl;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, nl).trim();
      buffered = buffered.slice(nl + 1);
      if (!line) continue;
      const msg = JSON.parse(line);
      if (msg.error) {
        throw new ApiError(200, msg.error.code, msg.error.message);
      }
      onMessage(msg.result);
    }
  }
}

// requestId is a fresh idempotency key for a command (crypto.randomUUID
// needs a secure context; getRandomValues does not).
export function requestId() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return "board-" + Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

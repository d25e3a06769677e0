// A box's live events: Server-Sent Events read with fetch(), so the API key travels in the
// Authorization header like every other call and never in a URL (EventSource cannot set headers,
// which is why browsers otherwise pass ?token=). After a drop it reconnects with Last-Event-ID, so
// the stream resumes exactly after the last event seen.

import { authorization } from "./api.js";

// The gateway sends a keep-alive comment when idle (15 s by default); silence much longer than that
// means the connection is dead even if the socket has not noticed.
const SILENCE_LIMIT_MS = 45000;
const RETRY_FIRST_MS = 500;
const RETRY_MAX_MS = 15000;

/** One parsed SSE frame, or null for a comment-only frame. */
export function parseFrame(text) {
  const frame = { id: null, event: "message", data: [] };
  let fields = 0;
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    fields += 1;
    if (name === "id") frame.id = value;
    else if (name === "event") frame.event = value;
    else if (name === "data") frame.data.push(value);
  }
  return fields ? { ...frame, data: frame.data.join("\n") } : null;
}

/**
 * Follows a box: onEvent(assetEvent) for each event, onState("live" | "reconnecting" | "closed",
 * detail) as the connection changes. Returns { close() }.
 */
export function watchBox(boxId, { onEvent, onState }) {
  let lastEventId = "";
  let closed = false;
  let controller = null;
  let retry = RETRY_FIRST_MS;

  async function connect() {
    controller = new AbortController();
    let silence = setTimeout(() => controller.abort(), SILENCE_LIMIT_MS);
    const headers = { ...authorization(), Accept: "text/event-stream" };
    if (lastEventId) headers["Last-Event-ID"] = lastEventId;
    try {
      const response = await fetch(`/api/boxes/${encodeURIComponent(boxId)}/events/`, {
        headers,
        signal: controller.signal,
        cache: "no-store",
      });
      if (response.status === 204) {
        closed = true;
        onState("closed", "the stream has ended");
        return;
      }
      if (!response.ok) {
        let message = `${response.status}`;
        try {
          message = (await response.json()).error || message;
        } catch {
          // keep the status
        }
        if (response.status === 401 || response.status === 403 || response.status === 404) {
          closed = true;
          onState("closed", message);
          return;
        }
        throw new Error(message);
      }
      onState("live");
      retry = RETRY_FIRST_MS;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        clearTimeout(silence);
        silence = setTimeout(() => controller.abort(), SILENCE_LIMIT_MS);
        buffer += value.replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const frame = parseFrame(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
          if (!frame) continue;
          if (frame.id) lastEventId = frame.id;
          if (frame.event === "asset") onEvent(JSON.parse(frame.data));
          else if (frame.event === "error") throw new Error(JSON.parse(frame.data).error);
        }
      }
      if (!closed) onState("reconnecting", "the gateway ended the stream");
    } catch (error) {
      if (closed) return;
      onState("reconnecting", error.message || String(error));
    } finally {
      clearTimeout(silence);
    }
    if (closed) return;
    setTimeout(() => {
      if (!closed) connect();
    }, retry);
    retry = Math.min(retry * 2, RETRY_MAX_MS);
  }

  connect();
  return {
    close() {
      closed = true;
      if (controller) controller.abort();
    },
    /** Drops the connection as a network failure would (the reconnect path). */
    drop() {
      if (controller) controller.abort();
    },
  };
}

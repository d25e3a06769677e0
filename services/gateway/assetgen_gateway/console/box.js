// A box: its assets newest first, filtered by status, kind and source, kept live by the box's event
// stream; the generate form and the upload panel when the key may write.

import { api, query } from "./api.js";
import { IN_FLIGHT, assetCard, mediaKind } from "./cards.js";
import { generateForm, uploadPanel } from "./compose.js";
import { field, h, replace } from "./dom.js";
import { watchBox } from "./events.js";

const PAGE_SIZE = 100;

function select(options) {
  return h("select", {}, options.map(([value, label]) => h("option", { value }, label)));
}

function newer(a, b) {
  return Date.parse(a.created_at || 0) >= Date.parse(b.created_at || 0);
}

/** Renders box boxId into main; returns what to call when leaving the page. */
export async function boxPage(main, boxId, context) {
  const path = `/api/boxes/${encodeURIComponent(boxId)}`;
  const [box, modelList] = await Promise.all([api("GET", `${path}/`), api("GET", "/api/models/").catch(() => ({ items: [] }))]);
  const models = new Map(modelList.items.map((model) => [model.name, model]));
  const cards = new Map();
  const grid = h("ul", { class: "grid", "aria-label": "Assets", "aria-live": "off" });
  const more = h("button", { type: "button", hidden: true }, "Load older assets");
  const live = h("span", { class: "live", role: "status" }, "Connecting…");
  const statusFilter = select([["", "All"], ["PENDING", "Pending"], ["PROCESSING", "Processing"], ["COMPLETED", "Completed"], ["FAILED", "Failed"], ["CANCELED", "Canceled"]]);
  const kindFilter = select([["", "All"], ["image", "Pictures"], ["video", "Videos"]]);
  const sourceFilter = select([["", "All"], ["GENERATED", "Generated"], ["UPLOADED", "Uploaded"], ["IMG2VID", "Image to video"]]);
  const [statusField] = field("Status", statusFilter);
  const [kindField] = field("Type", kindFilter);
  const [sourceField] = field("Source", sourceFilter);
  let cursor = "";
  let oldestLoaded = null;
  let composer = null;

  function visible(asset) {
    return (
      (!statusFilter.value || asset.status === statusFilter.value) &&
      (!kindFilter.value || mediaKind(asset, models) === kindFilter.value) &&
      (!sourceFilter.value || asset.source_type === sourceFilter.value)
    );
  }

  function applyFilters() {
    for (const card of cards.values()) card.element.hidden = !visible(card.asset);
  }

  const board = {
    models,
    capabilities: context.capabilities,
    posterOf(asset) {
      const parent = asset.parent_asset && cards.get(asset.parent_asset);
      return parent && parent.asset.status === "COMPLETED" && mediaKind(parent.asset, models) === "image" ? parent.asset.file_url : null;
    },
    changed(asset) {
      upsert(asset);
    },
    removed(id) {
      const card = cards.get(id);
      if (card) card.element.remove();
      cards.delete(id);
    },
  };

  /** Adds or updates an asset's card, placing a new one by creation time (newest first). */
  function upsert(asset, atEnd = false) {
    const known = cards.get(asset.id);
    if (known) {
      known.update(asset);
      known.element.hidden = !visible(known.asset);
      return known;
    }
    const card = assetCard(asset, board);
    cards.set(asset.id, card);
    const before = atEnd ? null : [...cards.values()].find((other) => other !== card && other.element.isConnected && newer(asset, other.asset));
    grid.insertBefore(card.element, before ? before.element : null);
    card.element.hidden = !visible(asset);
    if (composer && mediaKind(asset, models) === "image") composer.refreshParents();
    return card;
  }

  async function loadPage() {
    const page = await api("GET", `${path}/assets/${query({ page_size: PAGE_SIZE, cursor })}`);
    for (const asset of page.items) {
      upsert(asset, true);
      oldestLoaded = asset.created_at;
    }
    cursor = page.next_cursor;
    more.hidden = !cursor;
  }
  more.addEventListener("click", loadPage);

  async function fetchAsset(id) {
    try {
      return await api("GET", `/api/assets/${encodeURIComponent(id)}/`);
    } catch {
      return null; // deleted meanwhile
    }
  }

  function laterState(candidate, shown) {
    const at = (asset) => Date.parse(asset.updated_at || "") || 0;
    return at(candidate) > at(shown) || (!IN_FLIGHT.has(candidate.status) && IN_FLIGHT.has(shown.status));
  }

  async function onEvent(event) {
    const known = cards.get(event.asset_id);
    if (!known) {
      // A snapshot of an asset older than the loaded pages belongs to "Load older assets".
      if (event.snapshot && cursor && oldestLoaded && Date.parse(event.at) < Date.parse(oldestLoaded)) return;
      const asset = await fetchAsset(event.asset_id);
      const current = asset && cards.get(asset.id);
      // Events are handled as they arrive, so the fetches for one new asset overlap and may answer
      // out of order: an answer is kept unless the card already shows a later state.
      if (asset && (!current || laterState(asset, current.asset))) upsert(asset);
      return;
    }
    const update = { status: event.status, progress: event.progress, attempt: event.attempt, error_message: event.error_message };
    if (event.status === "COMPLETED" && (!known.asset.file_url || !known.asset.content_type)) {
      const asset = await fetchAsset(event.asset_id);
      if (asset) upsert(asset);
      return;
    }
    upsert({ ...known.asset, ...update });
  }

  const filters = h("fieldset", { class: "filters" }, h("legend", {}, "Show"), statusField, kindField, sourceField);
  for (const control of [statusFilter, kindFilter, sourceFilter]) control.addEventListener("change", applyFilters);

  const heading = h("div", { class: "page-title" }, h("h1", {}, box.name), live);
  const parts = [h("p", { class: "crumbs" }, h("a", { href: "/", "data-link": true }, "Boxes"), " / ", box.name), heading];
  if (context.capabilities.write) {
    const imageAssets = () => [...cards.values()].map((card) => card.asset).filter((asset) => asset.status === "COMPLETED" && mediaKind(asset, models) === "image");
    composer = generateForm({ id: boxId, imageAssets }, modelList.items, (asset) => upsert(asset));
    parts.push(h("div", { class: "compose-row" }, composer.element, uploadPanel(boxId, (asset) => upsert(asset))));
  } else {
    parts.push(h("p", { class: "hint" }, "This key may look at the box but not change it."));
  }
  parts.push(filters, grid, more);
  replace(main, parts);
  await loadPage();
  if (composer) composer.refreshParents();

  const stream = watchBox(boxId, {
    onEvent,
    onState(state, detail) {
      live.dataset.state = state;
      live.textContent = state === "live" ? "Live" : state === "reconnecting" ? `Reconnecting… (${detail})` : `Not live: ${detail}`;
    },
  });
  // Tests drop the stream on purpose to check the reconnect.
  window.assetgenStream = stream;
  return () => {
    stream.close();
    if (window.assetgenStream === stream) delete window.assetgenStream;
  };
}

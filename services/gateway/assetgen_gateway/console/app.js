// The console's entry: sign-in, what the key may do, and the page for the current path.

import { ApiError, checkKey, probeCapabilities, session } from "./api.js";
import { adminPage } from "./admin.js";
import { boxPage } from "./box.js";
import { boxesPage } from "./boxes.js";
import { errorBox, field, h, notify, replace } from "./dom.js";

const main = document.getElementById("main");
let capabilities = null;
let leavePage = () => {};
let renders = 0;

/** Goes to a console path without reloading. */
export function navigate(path) {
  history.pushState(null, "", path);
  render();
}

function signInPage() {
  const key = h("input", { type: "password", name: "api-key", autocomplete: "current-password", required: true });
  const [keyField] = field("API key", key, "Kept for this browser tab only, and sent as a bearer header.");
  const problem = errorBox();
  const form = h(
    "form",
    { class: "card narrow", "aria-labelledby": "sign-in-title" },
    h("h1", { id: "sign-in-title" }, "Sign in"),
    keyField,
    problem.element,
    h("button", { type: "submit" }, "Sign in"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    problem.clear();
    try {
      await checkKey(key.value.trim());
    } catch (error) {
      problem.show(error.message);
      return;
    }
    session.signIn(key.value.trim());
    document.getElementById("notice").replaceChildren();
    capabilities = null;
    render();
  });
  replace(main, form);
  key.focus();
}

async function render() {
  renders += 1;
  const generation = renders;
  leavePage();
  leavePage = () => {};
  const nav = document.getElementById("nav");
  if (!session.key) {
    nav.hidden = true;
    signInPage();
    return;
  }
  if (!capabilities) {
    capabilities = await probeCapabilities();
  }
  nav.hidden = false;
  document.getElementById("nav-admin").hidden = !capabilities.admin;
  const path = location.pathname.replace(/\/+$/, "") || "/";
  const boxMatch = path.match(/^\/boxes\/([^/]+)$/);
  const context = { capabilities, navigate };
  try {
    let leave;
    if (boxMatch) {
      leave = await boxPage(main, decodeURIComponent(boxMatch[1]), context);
    } else if (path === "/admin" && capabilities.admin) {
      leave = await adminPage(main, context);
    } else if (path === "/" || path === "/boxes") {
      leave = await boxesPage(main, context);
    } else {
      replace(main, h("h1", {}, "Not found"), h("p", {}, h("a", { href: "/", "data-link": true }, "Back to the boxes")));
    }
    if (generation !== renders) {
      // Another page was asked for meanwhile: this one is already gone.
      if (typeof leave === "function") leave();
      return;
    }
    if (typeof leave === "function") leavePage = leave;
    document.title = `${main.querySelector("h1")?.textContent || "Console"} · AssetGen`;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return;
    replace(main, h("h1", {}, "Something went wrong"), h("p", { class: "error", role: "alert" }, error.message));
  }
}

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-link]");
  if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
  event.preventDefault();
  navigate(link.getAttribute("href"));
});
window.addEventListener("popstate", render);
window.addEventListener("assetgen:unauthenticated", () => {
  session.signOut();
  capabilities = null;
  notify("The API key was refused; sign in again.", "error");
  render();
});
document.getElementById("sign-out").addEventListener("click", () => {
  session.signOut();
  capabilities = null;
  render();
});
render();

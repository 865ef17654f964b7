// The preview page: panels filled from /api/state, the email in a frame from
// /email.html, live reload from /events (server-sent events). The chosen view,
// width, colour scheme and subscriber live in the URL hash, so a reload (or a
// restart of the server) keeps them.
"use strict";

const $ = (selector) => document.querySelector(selector);
const frame = $("#frame");
const defaults = { view: "email", width: "desktop", scheme: "auto", as: "sample" };
const choices = { view: ["email", "text", "source", "checks"], width: ["desktop", "phone"], scheme: ["auto", "light", "dark"] };
const state = Object.assign({}, defaults, readHash());
// The server renders the page with the frame already pointing at the sample reader's email
// (so it loads with the page, not after two round trips); only a different choice reloads it.
const initialVersion = Number(document.body.dataset.initialVersion);
let shown = initialVersion > 0 ? { version: initialVersion, as: "sample", scheme: "auto" } : { version: -1, as: null, scheme: null };
let pendingTarget = null;

function readHash() {
  const found = Object.fromEntries(new URLSearchParams(location.hash.slice(1)));
  for (const [key, allowed] of Object.entries(choices)) {
    if (found[key] && !allowed.includes(found[key])) delete found[key];
  }
  return found;
}

function writeHash() {
  history.replaceState(null, "", "#" + new URLSearchParams(state).toString());
}

function applyControls() {
  for (const key of ["view", "width", "scheme"]) {
    document.querySelectorAll(`button[data-${key}]`).forEach((button) => {
      button.setAttribute("aria-pressed", String(button.dataset[key] === state[key]));
    });
  }
  document.body.dataset.width = state.width;
  document.body.dataset.view = state.view;
  for (const view of choices.view) $("#panel-" + view).hidden = view !== state.view;
  $("#as").value = state.as;
  requestAnimationFrame(fitFrame);
}

function query() {
  return "as=" + encodeURIComponent(state.as);
}

async function refresh() {
  const response = await fetch("/api/state?" + query(), { cache: "no-store" });
  const data = await response.json();
  if (!response.ok) {
    showError({ message: data.error, hint: data.hint });
    return;
  }
  document.body.dataset.version = data.version;
  showError(data.error, Boolean(data.slug));
  $("#subject").textContent = data.subject || data.article;
  $("#meta").textContent = data.slug ? `From ${data.from} · To ${data.to} · theme ${data.theme} · composed in ${data.compose_ms} ms` : "";
  $("#text").textContent = data.text || "";
  $("#source").textContent = data.source || "";
  showMissingLink(data.missing_link);
  showFindings(data.findings || []);
  loadFrame(data.version);
  if (state.view === "checks") loadSpam(data.version);
}

// SpamAssassin takes a second: asked for only while the Checks tab is open, once per version.
let spamVersion = -1;
async function loadSpam(version) {
  if (version === spamVersion) return;
  spamVersion = version;
  const box = $("#spam");
  box.replaceChildren(heading("SpamAssassin: checking…"));
  const response = await fetch("/api/spam", { cache: "no-store" });
  const data = await response.json();
  if (version !== spamVersion) return;
  if (!response.ok) {
    box.replaceChildren(heading("SpamAssassin: " + data.error));
    return;
  }
  const spam = data.spam;
  if (!spam.available) {
    box.replaceChildren(heading(`SpamAssassin: not run: ${spam.reason}`), paragraph(spam.hint));
    return;
  }
  const list = document.createElement("ul");
  for (const rule of spam.rules) {
    const li = document.createElement("li");
    const points = document.createElement("span");
    points.className = "points";
    points.textContent = (rule.points > 0 ? "+" : "") + rule.points.toFixed(1);
    const name = document.createElement("code");
    name.textContent = rule.name;
    li.append(points, name, document.createTextNode(" " + rule.description));
    list.append(li);
  }
  box.replaceChildren(heading(`SpamAssassin: content score ${spam.content_score.toFixed(1)} (total ${(spam.score + 0).toFixed(1)}, ${spam.required.toFixed(1)} required)`), list);
}

function heading(text) {
  const h = document.createElement("h2");
  h.textContent = text;
  return h;
}

function paragraph(text) {
  const p = document.createElement("p");
  p.textContent = text;
  return p;
}

function loadFrame(version) {
  if (version === shown.version && state.as === shown.as && state.scheme === shown.scheme) return;
  shown = { version, as: state.as, scheme: state.scheme };
  frame.src = `/email.html?${query()}&scheme=${state.scheme}&v=${version}`;
}

// The article names a recently-published article without its address: a field to paste it,
// saved into the article file by the server (as `compose --save-link` does).
function showMissingLink(missing) {
  const form = $("#link-form");
  form.hidden = !missing;
  if (missing) $("#link-title").textContent = missing.title;
}

async function saveLink(event) {
  event.preventDefault();
  const notice = $("#notice");
  const response = await fetch("/api/save-link", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ url: $("#link-url").value.trim() }),
  });
  const data = await response.json();
  notice.hidden = false;
  notice.classList.toggle("bad", !response.ok);
  notice.textContent = response.ok
    ? `Saved the address into ${data.article} (backup: ${data.backup}).`
    : `Not saved: ${data.error}${data.hint ? " (" + data.hint + ")" : ""}`;
  if (response.ok) refresh();
}

function fitFrame() {
  const doc = frame.contentDocument;
  if (!doc || !doc.body) return;
  const height = Math.max(doc.body.scrollHeight, doc.body.offsetHeight);
  frame.style.height = Math.max(height + 4, 200) + "px";
}

function frameLoaded() {
  fitFrame();
  document.body.dataset.frameVersion = shown.version;
  if (pendingTarget) highlight(pendingTarget);
}

frame.addEventListener("load", frameLoaded);
// The server-rendered frame may have finished loading before this script ran.
if (frame.contentDocument && frame.contentDocument.readyState === "complete" && frame.contentDocument.URL !== "about:blank") frameLoaded();

function showError(error, stale) {
  const box = $("#error");
  box.hidden = !error;
  document.body.classList.toggle("stale", Boolean(error && stale));
  if (!error) return;
  box.textContent = error.message + (error.hint ? "\nHint: " + error.hint : "") +
    (stale ? "\n(The page shows the last version that composed; save again to update.)" : "");
}

function showFindings(findings) {
  const list = $("#findings");
  list.replaceChildren();
  const errors = findings.filter((f) => f.level === "error").length;
  const warnings = findings.length - errors;
  const parts = [errors && `${errors} error${errors > 1 ? "s" : ""}`, warnings && `${warnings} warning${warnings > 1 ? "s" : ""}`];
  $("#count").textContent = findings.length ? "· " + parts.filter(Boolean).join(", ") : "✓";
  if (!findings.length) list.append(item("none", "No findings: ready to send.", null));
  for (const finding of findings) {
    const li = item(finding.level, finding.message, finding.code);
    const link = document.createElement("a");
    link.href = "#";
    link.textContent = finding.target ? "show in the email" : `open ${finding.view}`;
    link.addEventListener("click", (event) => {
      event.preventDefault();
      pendingTarget = finding.target;
      choose("view", finding.view);
      if (finding.target) highlight(finding.target);
    });
    li.append(link);
    list.append(li);
  }
}

function item(level, message, code) {
  const li = document.createElement("li");
  li.className = level;
  if (code) {
    const tag = document.createElement("code");
    tag.textContent = code;
    li.append(tag);
  }
  li.append(document.createTextNode(message));
  return li;
}

function highlight(target) {
  const doc = frame.contentDocument;
  if (!doc) return;
  const element = [...doc.querySelectorAll("a[href], img[src]")].find((el) => (el.getAttribute("href") || el.getAttribute("src")) === target);
  if (!element) return;
  pendingTarget = null;
  element.style.outline = "3px solid #d4a11e";
  element.style.outlineOffset = "2px";
  element.scrollIntoView({ block: "center" });
}

function choose(key, value) {
  state[key] = value;
  writeHash();
  applyControls();
  if (key === "scheme" || key === "as") refresh();
  if (key === "view" && value === "checks") loadSpam(Number(document.body.dataset.version));
}

// "Render as" is a fixed-width field searching a datalist of the first 200 subscribers:
// the browser filters the list as one types, and a long name never widens the toolbar.
async function loadSubscribers() {
  const list = $("#people");
  const response = await fetch("/api/subscribers", { cache: "no-store" });
  const data = response.ok ? await response.json() : { subscribers: [], error: "unavailable" };
  for (const person of data.subscribers) {
    const option = document.createElement("option");
    option.value = person.email;
    option.label = person.name ? `${person.name} <${person.email}>` : person.email;
    list.append(option);
  }
  if (data.error) $("#as").title = `Subscribers unavailable (store: ${data.error}); 'sample' works`;
}

async function sendTest(event) {
  event.preventDefault();
  const notice = $("#notice");
  const response = await fetch("/send-test", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ to: $("#send-to").value, as: state.as }),
  });
  const data = await response.json();
  notice.hidden = false;
  notice.classList.toggle("bad", !response.ok);
  notice.textContent = response.ok
    ? `Sent "${data.subject}" to ${data.to} (${data.transport}).`
    : `Not sent: ${data.error}${data.hint ? " (" + data.hint + ")" : ""}`;
}

function listen() {
  const status = $("#status");
  const events = new EventSource("/events");
  events.onopen = () => { status.classList.add("live"); status.title = "live reload: connected"; };
  events.onerror = () => { status.classList.remove("live"); status.title = "live reload: reconnecting…"; };
  events.onmessage = (event) => {
    const { version } = JSON.parse(event.data);
    if (String(version) !== document.body.dataset.version) refresh();
  };
}

document.querySelectorAll("button[data-view], button[data-width], button[data-scheme]").forEach((button) => {
  const key = ["view", "width", "scheme"].find((k) => button.dataset[k]);
  button.addEventListener("click", () => choose(key, button.dataset[key]));
});
$("#as").addEventListener("change", (event) => choose("as", event.target.value.trim() || "sample"));
$("#send-form").addEventListener("submit", sendTest);
$("#link-form").addEventListener("submit", saveLink);
window.addEventListener("resize", fitFrame);
applyControls();
// The panels and the subscriber list load side by side: the store may take a moment to open.
refresh();
listen();
loadSubscribers();

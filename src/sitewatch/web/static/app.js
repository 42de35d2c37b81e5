// sitewatch's web app: the pages' behaviour over the REST API (/api), with the session cookie and its CSRF
// token.  No build step for this file; MapLibre GL JS and maplibre-gl-compare come from static/vendor (copied
// from their npm packages by scripts/build-web.sh).  Page state (dates, bands, selected change, filters) is in
// the URL's query, the map position in its hash, so that a link can be shared.

const CSRF = document.querySelector('meta[name="csrf-token"]')?.content || "";
const PAGE = document.body.dataset.page;
// a link with a map position (#zoom/lat/lon) opens there; MapLibre writes the hash as soon as a map starts,
// so whether the page was opened with one is read first
const OPENED_AT_POSITION = /^#\d/.test(location.hash);
const STATUS_COLOURS = ["match", ["get", "status"], "confirmed", "#e4572e", "probable", "#f3a712", "#6c8ead"];

function say(text, isError = false) {
  const el = document.getElementById("status");
  el.textContent = text;
  el.className = isError ? "error" : "";
}

// fetch JSON from the API; errors (one JSON shape) become exceptions carrying the server's detail
async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = CSRF;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body) });
  if (r.status === 401) { location.href = `/login?next=${encodeURIComponent(location.pathname + location.search)}`; }
  const data = r.status === 204 ? null : await r.json().catch(() => null);
  if (!r.ok) throw new Error(data?.error?.detail || `${r.status} ${r.statusText}`);
  return data;
}

const query = () => new URLSearchParams(location.search);
function setQuery(changes) {
  const q = query();
  for (const [k, v] of Object.entries(changes)) {
    if (v === null || v === undefined || v === "") q.delete(k); else q.set(k, v);
  }
  const s = q.toString();
  history.replaceState(null, "", `${location.pathname}${s ? "?" + s : ""}${location.hash}`);
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "dataset") Object.assign(e.dataset, v);
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
  return e;
}

const day = (iso) => (iso ? iso.slice(0, 10) : "—");
const num = (x) => (x === null || x === undefined ? "—" : Math.round(x).toLocaleString("en"));

// ---- maps ----------------------------------------------------------------------------------------------
let maplibre = null;
async function loadMaplibre() {
  if (maplibre) return maplibre;
  try {
    const mod = await import("/static/vendor/maplibre-gl.mjs");
    maplibre = { ...mod };
    window.maplibregl = maplibre; // maplibre-gl-compare attaches itself to window.maplibregl
    await new Promise((ok, fail) => {
      const s = el("script", { src: "/static/vendor/maplibre-gl-compare.js" });
      s.onload = ok; s.onerror = fail;
      document.head.append(s);
    });
  } catch (err) {
    say(`The map could not start (${err.message}); the tables still work.`, true);
    maplibre = null;
  }
  return maplibre;
}

function baseStyle() {
  const style = { version: 8, sources: {}, layers: [{ id: "background", type: "background",
    paint: { "background-color": "#20262b" } }] };
  const basemap = document.body.dataset.basemap;
  if (basemap) {
    style.sources.basemap = { type: "raster", tiles: [basemap], tileSize: 256 };
    style.layers.push({ id: "basemap", type: "raster", source: "basemap" });
  }
  return style;
}

async function newMap(container, options = {}) {
  const lib = await loadMaplibre();
  if (!lib) return null;
  const map = new lib.Map({ container, style: baseStyle(), center: [0, 20], zoom: 1,
    attributionControl: false, ...options });
  map.addControl(new lib.NavigationControl({ showCompass: false }), "top-right");
  map.addControl(new lib.ScaleControl({ unit: "metric" }), "bottom-left");
  await new Promise((ok) => (map.loaded() ? ok() : map.once("load", ok)));
  return map;
}

function boundsOf(features) {
  let b = null;
  const visit = (c) => {
    if (typeof c[0] === "number") {
      b = b ? [Math.min(b[0], c[0]), Math.min(b[1], c[1]), Math.max(b[2], c[0]), Math.max(b[3], c[1])]
        : [c[0], c[1], c[0], c[1]];
    } else c.forEach(visit);
  };
  features.forEach((f) => f.geometry && visit(f.geometry.coordinates));
  return b;
}

function addChanges(map, id, data, extraFilter = null) {
  map.addSource(id, { type: "geojson", data, promoteId: "id" });
  const filter = extraFilter || ["has", "status"];
  map.addLayer({ id: `${id}-fill`, type: "fill", source: id, filter,
    paint: { "fill-color": STATUS_COLOURS, "fill-opacity": 0.35 } });
  map.addLayer({ id: `${id}-line`, type: "line", source: id, filter,
    paint: { "line-color": STATUS_COLOURS, "line-width": 2 } });
}

// ---- the map of the watchlist -----------------------------------------------------------------------------
async function mapPage() {
  const sites = await api("/api/sites");
  const changes = { type: "FeatureCollection", features: [] };
  for (const s of sites.features) {
    const fc = await api(`/api/sites/${encodeURIComponent(s.properties.name)}/detections?limit=1000`);
    changes.features.push(...fc.features);
  }
  document.body.dataset.changes = String(changes.features.length);
  const form = document.getElementById("add-site");
  form?.addEventListener("submit", addSite);
  const map = await newMap("map", { hash: true });
  window.sitewatchMaps = { map };
  if (!map) return;
  map.addSource("sites", { type: "geojson", data: sites });
  map.addLayer({ id: "sites-line", type: "line", source: "sites",
    paint: { "line-color": "#7fd1ff", "line-width": 2, "line-dasharray": [2, 1] } });
  addChanges(map, "changes", changes);
  map.on("click", "sites-line", (e) => {
    location.href = `/sites/${encodeURIComponent(e.features[0].properties.name)}`;
  });
  const b = boundsOf(sites.features);
  if (b && !OPENED_AT_POSITION) map.fitBounds(b, { padding: 40, duration: 0 });
  document.body.dataset.ready = "1";
}

async function addSite(event) {
  event.preventDefault();
  const f = new FormData(event.target);
  let geo;
  try {
    geo = JSON.parse(f.get("geometry"));
  } catch (err) {
    say(`The area is not valid JSON: ${err.message}`, true);
    return;
  }
  const feature = geo.type === "Feature" ? geo : { type: "Feature", geometry: geo, properties: {} };
  feature.properties = { ...(feature.properties || {}), name: f.get("name"), reason: f.get("reason") || "" };
  try {
    const site = await api("/api/sites", { method: "POST", body: feature });
    location.href = `/sites/${encodeURIComponent(site.properties.name)}`;
  } catch (err) {
    say(`The site was not added: ${err.message}`, true);
  }
}

// ---- a site: time slider, swipe, timeline, detections table, detection job ----------------------------------
async function sitePage() {
  const name = document.body.dataset.site;
  const enc = encodeURIComponent(name);
  document.getElementById("run-detect")?.addEventListener("click", () => runDetection(enc));
  const [scenesDoc, changes] = await Promise.all([api(`/api/sites/${enc}/scenes`),
    api(`/api/sites/${enc}/detections?limit=1000`)]);
  // the clear looks: scenes the latest detection found clear enough (all of them before any detection)
  const scenes = scenesDoc.scenes.filter((s) => s.clear_fraction === null || s.clear_fraction >= 0.2);
  const slider = document.getElementById("time-slider");
  const label = document.getElementById("time-label");
  const beforeSel = document.getElementById("before-date");
  const bandsSel = document.getElementById("bands");
  const q = query();
  slider.max = String(Math.max(scenes.length - 1, 0));
  const at = (id, fallback) => { const i = scenes.findIndex((s) => s.id === id); return i >= 0 ? i : fallback; };
  slider.value = String(at(q.get("after"), scenes.length - 1));
  for (const [i, s] of scenes.entries()) beforeSel.append(el("option", { value: String(i) }, day(s.datetime)));
  beforeSel.value = String(at(q.get("before"), 0));
  if ([...bandsSel.options].some((o) => o.value === q.get("bands"))) bandsSel.value = q.get("bands");
  drawTimeline(scenes, scenesDoc.scenes, changes.features);

  const rows = [...document.querySelectorAll("tr[data-change-id]")];
  let maps = null;
  const tiles = (s) => [`/api/scenes/${encodeURIComponent(s.id)}/tiles/{z}/{x}/{y}.png?bands=${bandsSel.value}`];
  const show = () => {
    const a = scenes[+slider.value], b = scenes[+beforeSel.value];
    label.textContent = a ? `${day(a.datetime)} (${a.platform || a.source}${a.clear_fraction === null ? ""
      : `, ${Math.round(100 * a.clear_fraction)}% clear`})` : "no scene";
    document.body.dataset.after = a ? a.id : "";
    document.body.dataset.before = b ? b.id : "";
    setQuery({ after: a?.id, before: b?.id, bands: bandsSel.value === "B04,B03,B02" ? null : bandsSel.value });
    moveMarker(a);
    if (!maps) return;
    for (const [map, s] of [[maps.after, a], [maps.before, b]]) {
      if (!s) continue;
      map.getSource("scene").setTiles(tiles(s));
      const until = ["<=", ["get", "first_seen_before"], s.datetime];
      for (const l of ["changes-fill", "changes-line"]) map.setFilter(l, until);
    }
  };
  const select = (id, fly = true) => {
    rows.forEach((r) => r.classList.toggle("selected", r.dataset.changeId === id));
    setQuery({ change: id });
    if (!maps) return;
    for (const m of [maps.before, maps.after]) m.setFilter("selected", ["==", ["get", "id"], id || ""]);
    const f = changes.features.find((x) => x.id === id);
    if (f && fly) maps.after.fitBounds(boundsOf([f]), { padding: 160, maxZoom: 15, duration: 0 });
  };
  rows.forEach((r) => {
    r.addEventListener("click", () => select(r.dataset.changeId));
    r.addEventListener("keydown", (e) => e.key === "Enter" && select(r.dataset.changeId));
  });
  slider.addEventListener("input", show);
  beforeSel.addEventListener("change", show);
  bandsSel.addEventListener("change", show);
  show();

  maps = await siteMaps(scenesDoc, changes, scenes, tiles);
  window.sitewatchMaps = maps; // for the browser tests and the console
  if (maps) {
    show();
    if (q.get("change")) select(q.get("change"), true);
    maps.after.on("click", "changes-fill", (e) => {
      const id = e.features[0].properties.id;
      select(id, false);
      document.querySelector(`tr[data-change-id="${CSS.escape(id)}"]`)?.scrollIntoView({ block: "nearest" });
    });
  } else if (q.get("change")) select(q.get("change"));
  document.body.dataset.ready = "1";
}

async function siteMaps(scenesDoc, changes, scenes, tiles) {
  const site = await api(`/api/sites/${encodeURIComponent(document.body.dataset.site)}`);
  const before = await newMap("map-before");
  const after = before && (await newMap("map-after", { hash: true }));
  if (!after) return null;
  const first = scenes[0] || scenesDoc.scenes[0];
  for (const map of [before, after]) {
    // tiles only where the site's scenes are, and not below zoom 8 (a whole scene's overview per tile)
    map.addSource("scene", { type: "raster", tiles: first ? tiles(first) : [], tileSize: 256, minzoom: 8,
      maxzoom: 16, bounds: boundsOf(scenesDoc.scenes.map((s) => ({ geometry: s.footprint }))) || undefined });
    map.addLayer({ id: "scene", type: "raster", source: "scene" });
    map.addSource("site", { type: "geojson", data: site });
    map.addLayer({ id: "site", type: "line", source: "site", paint: { "line-color": "#7fd1ff", "line-width": 2 } });
    addChanges(map, "changes", changes);
    map.addLayer({ id: "selected", type: "line", source: "changes", filter: ["==", ["get", "id"], ""],
      paint: { "line-color": "#ffffff", "line-width": 4 } });
  }
  const compare = new window.maplibregl.Compare(before, after, "#compare", { orientation: "vertical" });
  const q = query();
  if (q.get("swipe")) compare.setSlider((+q.get("swipe") / 100) * after.getContainer().clientWidth);
  compare.on("slideend", (e) => {
    const pct = Math.round((100 * e.currentPosition) / after.getContainer().clientWidth);
    document.body.dataset.swipe = String(pct);
    setQuery({ swipe: pct });
  });
  const b = boundsOf([site]);
  if (b && !OPENED_AT_POSITION) after.fitBounds(b, { padding: 30, duration: 0 });
  return { before, after, compare };
}

let marker = null;
let xOf = null;
function moveMarker(scene) {
  if (!marker || !scene || !xOf) return;
  const x = xOf(scene.datetime);
  marker.setAttribute("x1", x);
  marker.setAttribute("x2", x);
}

function drawTimeline(clear, all, changes) {
  const svg = document.getElementById("timeline");
  const W = 360, H = 110, pad = 24;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.replaceChildren();
  const ns = "http://www.w3.org/2000/svg";
  const add = (tag, attrs) => { const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); svg.append(e); return e; };
  if (!all.length) return;
  const t = (iso) => Date.parse(iso);
  const t0 = t(all[0].datetime), t1 = Math.max(t(all[all.length - 1].datetime), t0 + 1);
  xOf = (iso) => pad + ((t(iso) - t0) / (t1 - t0)) * (W - 2 * pad);
  add("line", { x1: pad, x2: W - pad, y1: H - pad, y2: H - pad, class: "axis" });
  for (const s of all) {
    const c = s.clear_fraction === null ? 1 : s.clear_fraction;
    const ok = clear.includes(s);
    add("line", { x1: xOf(s.datetime), x2: xOf(s.datetime), y1: H - pad, y2: H - pad + 2 - 16 * c,
      class: ok ? "look clear" : "look cloudy" }).append(Object.assign(document.createElementNS(ns, "title"),
      { textContent: `${day(s.datetime)}: ${s.clear_fraction === null ? "?" : Math.round(100 * c) + "% clear"}` }));
  }
  // cumulative changed area at each change's first clear sight
  const steps = changes.map((f) => [f.properties.first_seen_before, f.properties.area_m2 || 0])
    .sort((a, b) => (a[0] < b[0] ? -1 : 1));
  const total = steps.reduce((s, x) => s + x[1], 0) || 1;
  let acc = 0, path = `M${pad},${H - pad - 18}`;
  for (const [when, area] of steps) {
    const x = xOf(when);
    path += ` L${x},${H - pad - 18 - ((acc / total) * (H - 2 * pad - 18))}`;
    acc += area;
    path += ` L${x},${H - pad - 18 - ((acc / total) * (H - 2 * pad - 18))}`;
  }
  path += ` L${W - pad},${H - pad - 18 - ((acc / total) * (H - 2 * pad - 18))}`;
  add("path", { d: path, class: "area" });
  add("text", { x: pad, y: 12, class: "label" }).textContent = `${num(acc)} m² changed`;
  add("text", { x: pad, y: H - 4, class: "label" }).textContent = day(all[0].datetime);
  add("text", { x: W - pad, y: H - 4, class: "label end" }).textContent = day(all[all.length - 1].datetime);
  marker = add("line", { x1: pad, x2: pad, y1: 14, y2: H - pad, class: "now" });
}

async function runDetection(enc) {
  const button = document.getElementById("run-detect");
  const out = document.getElementById("job");
  button.disabled = true;
  try {
    let job = await api(`/api/sites/${enc}/detect`, { method: "POST" });
    out.textContent = `Detection job ${job.id}: ${job.state}…`;
    while (job.state === "queued" || job.state === "running") {
      await new Promise((ok) => setTimeout(ok, 1000));
      job = await api(`/api/jobs/${job.id}`);
      out.textContent = `Detection job ${job.id}: ${job.state}…`;
    }
    if (job.state === "failed") throw new Error(job.error || "the job failed");
    out.textContent = `Detection job ${job.id}: done.`;
    location.reload();
  } catch (err) {
    say(`Detection failed: ${err.message}`, true);
    button.disabled = false;
  }
}

// ---- the review queue -----------------------------------------------------------------------------------------
async function candidatesPage() {
  const sel = document.getElementById("cand-status");
  const wanted = query().get("status");
  sel.value = wanted === "all" ? "" : [...sel.options].some((o) => o.value === wanted) ? wanted : "open";
  const map = await newMap("map", { hash: true });
  window.sitewatchMaps = { map };
  if (map) addChanges(map, "cands", { type: "FeatureCollection", features: [] }, ["has", "area"]);
  const load = async () => {
    setQuery({ status: sel.value === "open" ? null : sel.value || "all" });
    const st = sel.value ? `status=${sel.value}&` : "";
    const fc = await api(`/api/candidates?${st}limit=500`);
    const body = document.querySelector("#candidates tbody");
    body.replaceChildren(...fc.features.map((f) => candidateRow(f, load)));
    if (!fc.features.length) body.append(el("tr", { class: "empty" }, el("td", { colspan: 7 }, "No candidate.")));
    if (map) {
      map.getSource("cands").setData(fc);
      const b = boundsOf(fc.features);
      if (b && !OPENED_AT_POSITION) map.fitBounds(b, { padding: 60, maxZoom: 14, duration: 0 });
    }
    document.body.dataset.ready = "1";
  };
  sel.addEventListener("change", load);
  await load();
}

function candidateRow(f, reload) {
  const p = f.properties;
  const reason = el("input", { name: "reason", placeholder: "why", "aria-label": "Why", maxlength: 2000 });
  const act = (verb, extra = {}) => async () => {
    try {
      await api(`/api/candidates/${p.id}/${verb}`, { method: "POST", body: { reason: reason.value, ...extra } });
      say(`Candidate ${p.rank} of ${p.area}: ${verb === "promote" ? "promoted to the watchlist" : verb + "ed"}.`);
      await reload();
    } catch (err) {
      say(`Candidate ${p.rank}: ${err.message}`, true);
    }
  };
  const decided = p.decided_by ? `${p.status} by ${p.decided_by} ${day(p.decided_at)}${p.reason ? ": " + p.reason : ""}`
    : "open";
  const buttons = p.status === "promoted" ? [el("a", { href: `/sites/${encodeURIComponent(p.site)}` }, p.site)] : [
    reason,
    el("button", { type: "button", class: "accept", onclick: act("accept") }, "Accept"),
    el("button", { type: "button", class: "reject", onclick: act("reject") }, "Reject"),
    // the new site is named after the candidate's id (the server's default: ranks change from search to search)
    el("button", { type: "button", class: "promote", onclick: act("promote") }, "Promote"),
  ];
  return el("tr", { dataset: { candidateId: String(p.id) }, class: p.status },
    el("td", {}, p.rank), el("td", {}, p.area), el("td", { class: "num" }, p.score?.toFixed(2)),
    el("td", { class: "num" }, num(p.area_m2)), el("td", {}, `${day(p.first_seen_after)} – ${day(p.first_seen_before)}`),
    el("td", { class: "decision" }, decided), el("td", { class: "act" }, ...buttons));
}

// ---- the alert inbox -------------------------------------------------------------------------------------------
async function alertsPage() {
  const kind = document.getElementById("alert-kind");
  const ack = document.getElementById("alert-ack");
  const where = document.getElementById("alert-site");
  const q = query();
  kind.value = q.get("kind") || "";
  ack.value = q.has("acknowledged") ? q.get("acknowledged") : "false";
  where.value = q.get("site") || "";
  const load = async () => {
    setQuery({ kind: kind.value, acknowledged: ack.value === "false" ? null : ack.value, site: where.value });
    const p = new URLSearchParams({ limit: "500" });
    if (kind.value) p.set("kind", kind.value);
    if (ack.value) p.set("acknowledged", ack.value);
    if (where.value) p.set("site", where.value);
    const doc = await api(`/api/alerts?${p}`);
    const body = document.querySelector("#alerts tbody");
    body.replaceChildren(...doc.alerts.map((a) => alertRow(a, load)));
    if (!doc.alerts.length) body.append(el("tr", { class: "empty" }, el("td", { colspan: 6 }, "No alert.")));
    document.body.dataset.ready = "1";
  };
  for (const c of [kind, ack]) c.addEventListener("change", load);
  where.addEventListener("change", load);
  await load();
}

function alertRow(a, reload) {
  const links = [];
  if (a.site) {
    links.push(el("a", { href: `/sites/${encodeURIComponent(a.site)}?change=${encodeURIComponent(a.change_id || "")}` },
      "on the map"));
  } else {
    links.push(el("a", { href: "/candidates" }, "review queue"));
  }
  const report = a.evidence?.report;
  if (report && /^https?:/.test(report)) links.push(" · ", el("a", { href: report }, "report"));
  const ack = a.acknowledged_at ? `acknowledged by ${a.acknowledged_by} ${day(a.acknowledged_at)}`
    : el("button", { type: "button", class: "ack", onclick: async () => {
      try {
        await api(`/api/alerts/${a.id}/ack`, { method: "POST" });
        say(`Alert ${a.id} acknowledged.`);
        await reload();
      } catch (err) {
        say(`Alert ${a.id}: ${err.message}`, true);
      }
    } }, "Acknowledge");
  return el("tr", { dataset: { alertId: String(a.id) }, class: a.kind },
    el("td", {}, day(a.created_at)), el("td", {}, a.kind), el("td", {}, a.site || a.area),
    el("td", {}, a.title), el("td", {}, ...links), el("td", {}, ack));
}

const PAGES = { map: mapPage, site: sitePage, candidates: candidatesPage, alerts: alertsPage };
PAGES[PAGE]?.().catch((err) => say(err.message, true));

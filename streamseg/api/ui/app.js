/* streamseg segment explorer: plain JavaScript and SVG, no library, no build step.
 *
 * A one-page app with hash routes (#/, #/segment/ID, #/customer/ID, #/drift) over the
 * API (/v1/segments, /v1/drift, /v1/customers/ID). The bearer token lives in this tab's
 * sessionStorage; the current page re-reads the API every POLL_MS while it is open.
 */
"use strict";

const TOKEN_KEY = "streamseg.token";
const POLL_MS = 2000;
const SVG_NS = "http://www.w3.org/2000/svg";
const ui = { timer: null, flowWindow: null, gen: 0, shown: "" };

class AuthError extends Error {}

// -- DOM helpers ------------------------------------------------------------------
function h(tag, attrs, ...kids) { return build(document.createElement(tag), attrs, kids); }
function s(tag, attrs, ...kids) { return build(document.createElementNS(SVG_NS, tag), attrs, kids); }

function build(el, attrs, kids) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v);
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : String(kid));
  }
  return el;
}

const $ = (id) => document.getElementById(id);
const pct = (x, d = 1) => (x === null || x === undefined ? "–" : (100 * x).toFixed(d) + "%");
const num = (x, d = 0) => (x === null || x === undefined ? "–"
  : Number(x).toLocaleString("en", { maximumFractionDigits: d, minimumFractionDigits: d }));
const signed = (x) => (x >= 0 ? "+" : "") + x.toFixed(2);

function money(x, currency) {
  if (x === null || x === undefined) return "–";
  try {
    return Number(x).toLocaleString("en", { style: "currency", currency, maximumFractionDigits: 2 });
  } catch (e) {
    return num(x, 2) + " " + currency;
  }
}

const segLink = (sid, name) => h("a", { href: "#/segment/" + sid, "data-segment": sid }, name ?? "Segment " + sid);
const custLink = (cid) => h("a", { href: "#/customer/" + encodeURIComponent(cid) }, cid);
const card = (k, v, testid) => h("div", { class: "card" }, h("div", { class: "k" }, k),
  h("div", { class: "v", "data-testid": testid }, v));

// -- API and token ----------------------------------------------------------------
function token() { return sessionStorage.getItem(TOKEN_KEY); }

async function api(path) {
  const t = token();
  const resp = await fetch(path, { headers: t ? { Authorization: "Bearer " + t } : {}, cache: "no-store" });
  let body = null;
  try { body = await resp.json(); } catch (e) { body = null; }
  const message = body && body.error ? body.error.message : resp.status + " " + resp.statusText;
  if (resp.status === 401) throw new AuthError(message);
  if (!resp.ok) throw Object.assign(new Error(message), { status: resp.status });
  return body;
}

function takeTokenFromUrl() {
  // `streamseg dev` prints /ui/#token=...: keep it for the tab and drop it from the address
  const m = location.hash.match(/^#token=([^&]*)/);
  if (!m) return;
  sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
  history.replaceState(null, "", location.pathname + "#/");
}

function showLogin(message) {
  clearTimeout(ui.timer);
  $("login").hidden = false;
  $("main").replaceChildren();
  $("logout").hidden = true;
  $("live").textContent = "signed out";
  $("live").classList.remove("on");
  $("login-error").textContent = message || "";
  $("token").focus();
}

async function login(event) {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
  $("token").value = "";
  $("login-error").textContent = "";
  await refresh();
}

function logout() {
  sessionStorage.removeItem(TOKEN_KEY);
  showLogin("");
}

// -- routing and the live loop ----------------------------------------------------
function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/");
  const page = parts[0] || "overview";
  const arg = parts.length > 1 ? decodeURIComponent(parts.slice(1).join("/")) : null;
  return { page: PAGES[page] ? page : "overview", arg };
}

async function refresh() {
  clearTimeout(ui.timer);
  if (token() === null) { showLogin(""); return; }
  const gen = ++ui.gen;  // a later refresh (a click, the next tick) supersedes this one
  const { page, arg } = route();
  try {
    const view = await PAGES[page](arg);
    if (gen !== ui.gen) return;
    show(page + "/" + arg, view);
    for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.nav === page);
    $("live").textContent = "live · " + new Date().toLocaleTimeString("en-GB");
    $("live").classList.add("on");
  } catch (err) {
    if (gen !== ui.gen) return;
    if (err instanceof AuthError) {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin("The API refused the token: " + err.message);
      return;
    }
    $("error").textContent = err.message;
    $("error").hidden = false;
    if (ui.shown !== page + "/" + arg) { $("main").replaceChildren(); ui.shown = page + "/" + arg; }
    $("live").classList.remove("on");
  }
  ui.timer = setTimeout(refresh, POLL_MS);
}

function show(key, view) {
  $("login").hidden = true;
  $("logout").hidden = false;
  $("error").hidden = true;
  const typing = document.activeElement && document.activeElement.tagName === "INPUT" &&
    $("main").contains(document.activeElement);
  if (typing && ui.shown === key) return;  // never wipe what someone is typing: next tick
  const scroll = ui.shown === key ? window.scrollY : 0;
  $("main").replaceChildren(view);
  window.scrollTo(0, scroll);
  ui.shown = key;
}

// -- charts -------------------------------------------------------------------------
function sparkline(values, width = 120, height = 28) {
  const pts = values.map((v, i) => [i, v]).filter(([, v]) => v !== null && v !== undefined);
  const svg = s("svg", { width, height, class: "sparkline", role: "img",
                         "aria-label": "share over recent windows" });
  if (pts.length === 0) return h("span", { class: "muted" }, "no report yet");
  const max = Math.max(...pts.map(([, v]) => v), 1e-9);
  const x = (i) => (values.length > 1 ? (i / (values.length - 1)) * (width - 6) + 3 : width / 2);
  const y = (v) => height - 3 - (v / max) * (height - 6);
  svg.append(s("polyline", { class: "spark", points: pts.map(([i, v]) => x(i) + "," + y(v)).join(" ") }));
  const [li, lv] = pts[pts.length - 1];
  svg.append(s("circle", { cx: x(li), cy: y(lv), r: 2.5, class: "spark-dot" }));
  svg.append(s("title", {}, pts.map(([, v]) => pct(v)).join(" → ")));
  return svg;
}

function profileChart(profile, model) {
  // top features first (most distinguishing), then every other feature by |z|
  const rest = Object.keys(profile.zscores).filter((f) => !profile.top_features.includes(f))
    .sort((a, b) => Math.abs(profile.zscores[b]) - Math.abs(profile.zscores[a]));
  const feats = [...profile.top_features, ...rest];
  const row = 20, label = 190, half = 150, width = label + 2 * half + 70;
  const zmax = Math.max(1, ...feats.map((f) => Math.abs(profile.zscores[f])));
  const svg = s("svg", { width, height: feats.length * row + 24, role: "img", "data-testid": "profile-chart",
                         "aria-label": "profile against the population, standardized units" });
  const mid = label + half;
  svg.append(s("line", { class: "axis", x1: mid, x2: mid, y1: 0, y2: feats.length * row }));
  feats.forEach((f, i) => {
    const z = profile.zscores[f];
    const w = (Math.abs(z) / zmax) * half;
    const y = i * row;
    const top = profile.top_features.includes(f);
    svg.append(s("text", { x: label - 8, y: y + 14, "text-anchor": "end", "font-weight": top ? 700 : 400 }, f));
    svg.append(s("rect", { x: z >= 0 ? mid : mid - w, y: y + 4, width: Math.max(w, 1), height: row - 8,
                           class: (z >= 0 ? "pos" : "neg") + (top ? " top" : "") },
                 s("title", {}, f + ": mean " + num(profile.means[f], 2) + ", " + signed(z) + " sd")));
    svg.append(s("text", { x: mid + half + 8, y: y + 14 }, signed(z)));
  });
  svg.append(s("text", { x: mid, y: feats.length * row + 16, "text-anchor": "middle", class: "muted" },
               "standardized units (sd from the population mean); bold: most distinguishing"));
  return svg;
}

function flowChart(migrations, names, me) {
  // Sankey-style: segments the customers left (left) to those they joined (right)
  const total = migrations.reduce((a, m) => a + m.customers, 0);
  if (total === 0) return h("p", { class: "muted" }, "No customer changed segment in this window.");
  const froms = [...new Set(migrations.map((m) => m.from_segment))].sort((a, b) => a - b);
  const tos = [...new Set(migrations.map((m) => m.to_segment))].sort((a, b) => a - b);
  const height = 260, gap = 10, width = 620, nodeW = 12, lx = 150, rx = width - 150 - nodeW;
  const scale = (height - gap * (Math.max(froms.length, tos.length) - 1)) / total;
  const place = (ids, key) => {
    let y = 0;
    const out = {};
    for (const id of ids) {
      const count = migrations.filter((m) => m[key] === id).reduce((a, m) => a + m.customers, 0);
      const size = count * scale;
      out[id] = { y, size, count, used: 0 };
      y += size + gap;
    }
    return out;
  };
  const left = place(froms, "from_segment"), right = place(tos, "to_segment");
  const svg = s("svg", { width, height: height + 10, role: "img", "data-testid": "flow-chart",
                         "aria-label": "customers who changed segment in the window" });
  for (const m of [...migrations].sort((a, b) => a.from_segment - b.from_segment || a.to_segment - b.to_segment)) {
    const w = m.customers * scale;
    const a = left[m.from_segment], b = right[m.to_segment];
    const y1 = a.y + a.used + w / 2, y2 = b.y + b.used + w / 2;
    a.used += w; b.used += w;
    const cls = m.to_segment === me ? "flow in" : m.from_segment === me ? "flow out" : "flow";
    const x1 = lx + nodeW, x2 = rx, c = (x2 - x1) / 2;
    svg.append(s("path", { class: cls, "stroke-width": Math.max(w, 1),
                           d: `M${x1},${y1} C${x1 + c},${y1} ${x2 - c},${y2} ${x2},${y2}` },
                 s("title", {}, `${names(m.from_segment)} → ${names(m.to_segment)}: ${m.customers}`)));
  }
  const node = (id, pos, x, anchor, tx) => {
    svg.append(s("rect", { x, y: pos.y, width: nodeW, height: Math.max(pos.size, 1),
                           class: id === me ? "node me" : "node" }));
    svg.append(s("text", { x: tx, y: pos.y + pos.size / 2 + 4, "text-anchor": anchor },
                 names(id) + " (" + num(pos.count) + ")"));
  };
  for (const id of froms) node(id, left[id], lx, "end", lx - 6);
  for (const id of tos) node(id, right[id], rx, "start", rx + nodeW + 6);
  return h("div", {}, h("p", { class: "muted" }, num(total) + " customers changed segment in the window " +
    "(band widths are shares of them)"), svg);
}

// -- shared reads ---------------------------------------------------------------------
function liveSegments(catalog) {
  return catalog.segments.filter((seg) => seg.status !== "retired" && seg.status !== "merged");
}

function shareSeries(drift) {
  // the shortest window's series (windows are listed shortest first)
  const w = drift.windows[0];
  const bySeg = {};
  if (w) for (const seg of w.shares.segments) bySeg[seg.segment_id] = seg.active_share;
  return { window: w ? w.window : null, bySeg, points: w ? w.shares.window_ends.length : 0 };
}

function lifecycleText(seg, names) {
  const rel = seg.related.map((r) => names(r)).join(", ");
  const what = { born: "born", merged: "merged into " + rel, split: "split from " + rel,
                 retired: "retired", active: "active" }[seg.status];
  return [segLink(seg.segment_id, names(seg.segment_id)), " ", h("span", { class: "pill " + seg.status }, seg.status),
          " " + what + " · model version " + seg.model_version + " · " + seg.updated_ts];
}

function namer(catalog) {
  // a retired or merged segment may share its name with a live one: then the id tells them apart
  const byId = Object.fromEntries(catalog.segments.map((seg) => [seg.segment_id, seg.name]));
  const uses = {};
  for (const seg of catalog.segments) uses[seg.name] = (uses[seg.name] || 0) + 1;
  return (sid) => (byId[sid] === undefined ? "Segment " + sid
    : uses[byId[sid]] > 1 ? byId[sid] + " #" + sid : byId[sid]);
}

// -- pages ----------------------------------------------------------------------------
async function overviewPage() {
  const [catalog, drift] = await Promise.all([api("/v1/segments"), api("/v1/drift")]);
  const live = liveSegments(catalog);
  const total = live.reduce((a, seg) => a + seg.size, 0);
  const series = shareSeries(drift);
  const names = namer(catalog);
  const rows = live.map((seg) => h("tr", { "data-segment-row": seg.segment_id },
    h("td", {}, segLink(seg.segment_id, seg.name)),
    h("td", { class: "num", "data-testid": "size-" + seg.segment_id }, num(seg.size)),
    h("td", { class: "num" }, pct(total ? seg.size / total : null)),
    h("td", {}, sparkline(series.bySeg[seg.segment_id] || [])),
    h("td", { class: "num" }, seg.value ? pct(seg.value.mean_churn_risk) : "–"),
    h("td", { class: "num" }, seg.value ? money(seg.value.mean_lifetime_value, seg.value.currency) : "–"),
    h("td", {}, h("span", { class: "pill " + seg.status }, seg.status))));
  const events = catalog.segments.filter((seg) => seg.status !== "active")
    .sort((a, b) => (a.updated_ts < b.updated_ts ? 1 : -1));
  return h("div", {},
    h("h1", {}, "Segments"),
    h("div", { class: "cards" },
      card("customers in live segments", num(total), "total-customers"),
      card("live segments", num(live.length), "live-segments"),
      card("model version", num(catalog.model_version), "model-version")),
    h("h2", {}, "Live segments"),
    h("table", { "data-testid": "segments" },
      h("thead", {}, h("tr", {}, h("th", {}, "segment"), h("th", { class: "num" }, "size"),
        h("th", { class: "num" }, "share"),
        h("th", {}, "active share, last " + series.points + " × " + (series.window || "–") + " windows"),
        h("th", { class: "num" }, "mean churn risk"), h("th", { class: "num" }, "mean lifetime value"),
        h("th", {}, "lifecycle"))),
      h("tbody", {}, rows)),
    live.length === 0 ? h("p", { class: "muted" }, "No segment yet: the model is warming up.") : null,
    h("h2", {}, "Lifecycle events"),
    events.length ? h("ul", { class: "events" }, events.map((seg) => h("li", {}, lifecycleText(seg, names))))
      : h("p", { class: "muted" }, "Every segment is active; none was born, merged, split or retired lately."));
}

function valueCards(v) {
  if (!v) return h("p", { class: "muted" }, "No value model fitted yet.");
  return h("div", { class: "cards" },
    card("mean churn risk", pct(v.mean_churn_risk), "churn-risk"),
    card("high-risk share", pct(v.high_risk_share)),
    card("mean lifetime value (" + v.horizon_days + " d)", money(v.mean_lifetime_value, v.currency)),
    card("total lifetime value", money(v.total_lifetime_value, v.currency)),
    card("value at risk", money(v.value_at_risk, v.currency)),
    card("net inflow", v.net_inflow === null ? "–" : (v.net_inflow >= 0 ? "+" : "") + v.net_inflow));
}

function validationCards(v) {
  if (!v) return h("p", { class: "muted" }, "Not measured yet.");
  return h("div", { class: "cards" },
    card("silhouette", v.silhouette === null ? "–" : v.silhouette.toFixed(2), "silhouette"),
    card("model silhouette", v.model_silhouette === null ? "–" : v.model_silhouette.toFixed(2)),
    card("stability", v.stability === null ? "born now" : pct(v.stability), "stability"),
    card("flags", v.flags.length ? v.flags.join(", ") : "none"));
}

function flowSection(drift, sid, names) {
  const windows = drift.windows.filter((w) => w.latest.length > 0);
  if (windows.length === 0) return h("p", { class: "muted" }, "No drift report yet.");
  if (!windows.some((w) => w.window === ui.flowWindow)) ui.flowWindow = windows[0].window;
  const w = windows.find((x) => x.window === ui.flowWindow);
  const merged = {};
  for (const r of w.latest) {
    for (const m of r.migrations) {
      const k = m.from_segment + ">" + m.to_segment;
      merged[k] = merged[k] || { ...m, customers: 0 };
      merged[k].customers += m.customers;
    }
  }
  const migrations = Object.values(merged);
  const select = h("select", { "aria-label": "window", onchange: (e) => { ui.flowWindow = e.target.value; e.target.blur(); refresh(); } },
    windows.map((x) => h("option", { value: x.window, selected: x.window === ui.flowWindow ? "" : null }, x.window)));
  const list = (rows, label, key) => h("div", {}, h("h3", {}, label),
    rows.length ? h("ul", {}, rows.map((m) => h("li", {}, segLink(m[key], names(m[key])), ": " + num(m.customers))))
      : h("p", { class: "muted" }, "none"));
  const inflow = migrations.filter((m) => m.to_segment === sid && m.from_segment !== sid);
  const outflow = migrations.filter((m) => m.from_segment === sid && m.to_segment !== sid);
  return h("div", {},
    h("p", {}, "Window ", select, " ending " + w.latest[0].window_end +
      " (customers who changed segment; green: into this segment, orange: out of it)"),
    flowChart(migrations, names, sid),
    h("div", { class: "grid2" }, list(inflow, "Came from", "from_segment"), list(outflow, "Went to", "to_segment")));
}

async function segmentPage(arg) {
  const [catalog, drift] = await Promise.all([api("/v1/segments"), api("/v1/drift")]);
  const seg = catalog.segments.find((x) => String(x.segment_id) === arg);
  if (!seg) throw new Error("segment " + arg + " is not in the catalog");
  const names = namer(catalog);
  const total = liveSegments(catalog).reduce((a, x) => a + x.size, 0);
  return h("div", {},
    h("p", {}, h("a", { href: "#/" }, "← all segments")),
    h("h1", { "data-testid": "segment-name" }, seg.name, " ", h("span", { class: "pill " + seg.status }, seg.status)),
    h("p", { class: "sub", "data-testid": "name-explanation" }, seg.name_reason || ""),
    h("div", { class: "cards" },
      card("customers", num(seg.size), "segment-size"),
      card("share", pct(total ? seg.size / total : null)),
      card("segment id", seg.segment_id),
      card("model version", seg.model_version)),
    h("form", { class: "lookup", onsubmit: (e) => { e.preventDefault(); goCustomer(e.target.elements.cid.value); } },
      h("input", { name: "cid", placeholder: "look up a customer", "aria-label": "customer id",
                   "data-testid": "segment-lookup" }),
      h("button", { type: "submit" }, "Look up")),
    h("h2", {}, "Profile against the population"),
    seg.profile ? profileChart(seg.profile) : h("p", { class: "muted" }, "No profile (retired)."),
    h("h2", {}, "Value and risk"), valueCards(seg.value),
    h("h2", {}, "Validation"), validationCards(seg.validation),
    h("h2", {}, "Where its customers came from and went"), flowSection(drift, seg.segment_id, names));
}

function table(headers, rows, testid) {
  return h("table", { "data-testid": testid },
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", {}, x)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c))))));
}

function historySection(history, names) {
  if (history === undefined) return h("p", { class: "muted" }, "This API keeps no history of segment changes.");
  if (history.length === 0) return h("p", { class: "muted" }, "No segment change recorded.");
  return table(["when", "from", "to", "model version"], history.map((e) => [
    new Date(e.ts_ms).toISOString().replace("T", " ").slice(0, 19),
    e.from_segment === null ? "(first assignment)" : segLink(e.from_segment, names(e.from_segment)),
    segLink(e.to_segment, names(e.to_segment)), e.model_version]), "history");
}

async function customerPage(arg) {
  const [c, catalog] = await Promise.all([api("/v1/customers/" + encodeURIComponent(arg)), api("/v1/segments")]);
  const names = namer(catalog);
  const v = c.value;
  return h("div", {},
    h("h1", {}, "Customer ", h("span", { "data-testid": "customer-id" }, c.customer_id)),
    h("div", { class: "cards" },
      card("segment", c.segment_id === null ? (c.warming_up || "not assigned") : segLink(c.segment_id, c.segment_name), "customer-segment"),
      card("distance to centre", c.distance === null ? "–" : c.distance.toFixed(2)),
      card("model version", c.model_version ?? "–"),
      card("last event", c.last_event_ts ?? "–")),
    h("h2", {}, "Value"),
    v ? h("div", { class: "cards" }, card("churn risk", pct(v.churn_risk)), card("risk band", v.risk_band),
      card("p(alive)", pct(v.p_alive)), card("expected purchases (" + v.horizon_days + " d)", num(v.expected_purchases, 2)),
      card("lifetime value", money(v.lifetime_value, v.currency)))
      : h("p", { class: "muted" }, "No value model fitted yet."),
    h("h2", {}, "Why this segment"),
    c.reasons.length ? table(["feature", "value", "previous segment's mean", "this segment's mean"],
      c.reasons.map((r) => [r.feature, num(r.value, 2), r.previous_mean === null ? "–" : num(r.previous_mean, 2),
        num(r.new_mean, 2)]), "reasons") : h("p", { class: "muted" }, "No reasons stored."),
    h("h2", {}, "Recent segment changes"), historySection(c.history, names),
    h("h2", {}, "Features as of " + c.features_as_of),
    table(["feature", "value"], Object.entries(c.features).map(([f, x]) => [f, num(x, 3)]), "features"));
}

function touches(report, alert, names) {
  // what an alert is about, from the report it belongs to
  if (alert.alert === "feature_psi") {
    return Object.entries(report.feature_psi).filter(([f, x]) => x > alert.threshold &&
      !report.time_driven_features.includes(f)).map(([f, x]) => f + " (PSI " + x.toFixed(2) + ")").join(", ");
  }
  if (alert.alert === "emerging_segment") return pct(report.emerging_share) + " of customers far from every centre";
  if (alert.alert === "population_shrink") {
    const gone = report.segments.filter((x) => x.exits > 0).sort((a, b) => b.exits - a.exits);
    return gone.length ? gone.map((x) => [segLink(x.segment_id, names(x.segment_id)), " " + x.exits + " gone  "])
      : pct(report.population_shrink) + " of the reference window's customers";
  }
  const moved = report.segments.map((x) => ({ ...x, d: x.share - x.reference_share }))
    .filter((x) => Math.abs(x.d) >= 0.01).sort((a, b) => Math.abs(b.d) - Math.abs(a.d));
  return moved.length ? moved.map((x) => [segLink(x.segment_id, names(x.segment_id)), " " + (x.d >= 0 ? "+" : "") + pct(x.d) + "  "])
    : "the whole population";
}

function reportSection(w, names) {
  if (w.latest.length === 0) return h("p", { class: "muted" }, "No " + w.window + " report yet.");
  return w.latest.map((r) => h("div", { "data-testid": "report-" + w.window },
    h("p", { class: "sub" }, r.window_start + " → " + r.window_end + " · worker " + r.worker + " · " +
      num(r.customers) + " customer updates · basis " + r.segment_basis + (r.segment_note ? " (" + r.segment_note + ")" : "")),
    h("div", { class: "cards" }, card("composition shift", pct(r.composition_shift)), card("PSI", r.psi.toFixed(3)),
      card("migration rate", pct(r.migration_rate)), card("emerging share", pct(r.emerging_share)),
      card("population shrink", pct(r.population_shrink))),
    h("h3", {}, "Alerts"),
    r.alerts.length ? h("ul", { class: "events" }, r.alerts.map((a) => h("li", { "data-testid": "alert" },
      h("span", { class: "pill alert" }, a.alert), " " + a.detail + " ", h("span", { class: "muted" }, "touches: "),
      touches(r, a, names)))) : h("p", { class: "muted" }, "No alert."),
    h("h3", {}, "Segments"),
    table(["segment", "share", "reference share", "active share", "forecast +1", "forecast +2"],
      r.segments.map((x) => {
        const f = r.forecast.find((y) => y.segment_id === x.segment_id);
        return [segLink(x.segment_id, x.name), pct(x.share), pct(x.reference_share), pct(x.active_share),
          f ? pct(f.one_window_ahead) : "–", f ? pct(f.two_windows_ahead) : "–"];
      }))));
}

async function driftPage() {
  const [drift, catalog] = await Promise.all([api("/v1/drift"), api("/v1/segments")]);
  const names = namer(catalog);
  return h("div", {}, h("h1", {}, "Drift and alerts"),
    drift.windows.map((w) => h("section", {}, h("h2", {}, w.window + " windows ", h("span", { class: "muted" },
      "(" + w.kept + " reports kept)")), reportSection(w, names))));
}

const PAGES = { overview: overviewPage, segment: segmentPage, customer: customerPage, drift: driftPage };

function goCustomer(cid) {
  cid = (cid || "").trim();
  if (cid) location.hash = "#/customer/" + encodeURIComponent(cid);
}

// -- start ------------------------------------------------------------------------------
takeTokenFromUrl();
$("login-form").addEventListener("submit", login);
$("logout").addEventListener("click", logout);
$("lookup").addEventListener("submit", (e) => { e.preventDefault(); goCustomer($("lookup-id").value); });
window.addEventListener("hashchange", refresh);
refresh();

// Baton UI. Hand-written, no framework, no build step.
//
// Every datum and every action goes through the JSON API with fetch, so a
// write made on a standby is forwarded to the executor exactly like a CLI
// write. Data is inserted with textContent only, never as HTML.
"use strict";

const TOKEN_KEY = "baton.token";
const STALE_MS = 5000; // an instance not seen for this long is shown as such
const body = document.body;
const authEnabled = body.dataset.auth === "true";

// ---- API ------------------------------------------------------------------

class APIError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

let loginWaiters = [];

// api calls the JSON API. On 401 it asks for a token and tries again, until
// the server accepts one.
async function api(method, path, payload) {
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = "Bearer " + token;
  const init = { method, headers, credentials: "same-origin" };
  if (payload !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(payload);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (e) {
    throw new APIError(0, "network", "cannot reach this instance: " + e.message);
  }
  if (resp.status === 401) {
    if (token) sessionStorage.removeItem(TOKEN_KEY);
    await askToken(token ? "That token was not accepted." : "");
    return api(method, path, payload);
  }
  const text = await resp.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch (e) { data = null; }
  }
  if (!resp.ok) {
    const err = (data && data.error) || {};
    throw new APIError(resp.status, err.code || "http_" + resp.status, err.message || text || resp.statusText, err.field);
  }
  return data;
}

function askToken(problem) {
  const dlg = document.getElementById("login");
  const errEl = document.getElementById("login-error");
  errEl.hidden = !problem;
  errEl.textContent = problem || "";
  updateLogout();
  if (!dlg.open) dlg.showModal();
  document.getElementById("login-token").focus();
  return new Promise((resolve) => loginWaiters.push(resolve));
}

function setupLogin() {
  const form = document.getElementById("login-form");
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const input = document.getElementById("login-token");
    const tok = input.value.trim();
    if (!tok) return;
    sessionStorage.setItem(TOKEN_KEY, tok);
    input.value = "";
    document.getElementById("login").close();
    updateLogout();
    const waiters = loginWaiters;
    loginWaiters = [];
    waiters.forEach((w) => w());
  });
  // The dialog cannot be dismissed without a token while calls wait on it.
  document.getElementById("login").addEventListener("cancel", (ev) => { if (loginWaiters.length) ev.preventDefault(); });
  document.getElementById("logout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    location.reload();
  });
  updateLogout();
}

function updateLogout() {
  document.getElementById("logout").hidden = !(authEnabled && sessionStorage.getItem(TOKEN_KEY));
}

// ---- Messages -------------------------------------------------------------

let flashTimer;

function flash(kind, title, detail) {
  const el = document.getElementById("flash");
  el.className = kind;
  el.replaceChildren();
  const b = document.createElement("b");
  b.textContent = title;
  el.append(b);
  if (detail) el.append(document.createTextNode(detail));
  el.hidden = false;
  clearTimeout(flashTimer);
  if (kind === "ok") flashTimer = setTimeout(() => { el.hidden = true; }, 4000);
}

// showError explains an API error, with the cases operators meet spelled out.
function showError(what, err) {
  if (err.code === "no_executor") {
    flash("error", what + " failed: no executor answered (503 no_executor).",
      "The change was NOT applied and will not be applied later. The cluster has no live executor right now " +
      "(for example during a failover); check the Cluster page and try again in a few seconds.\n" + err.message);
  } else if (err.code === "store_unavailable") {
    flash("error", what + " failed: the store is unavailable (503).", err.message);
  } else if (err.status === 403 && err.code === "forbidden") {
    flash("error", what + " failed: your token may only read.", "Sign out and sign in with a write token.");
  } else {
    flash("error", what + " failed" + (err.status ? " (" + err.status + " " + err.code + ")" : "") + ":",
      (err.field ? err.field + ": " : "") + err.message);
  }
}

// ---- Formatting -----------------------------------------------------------

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function badge(text, cls) {
  return el("span", { class: "badge " + (cls || text), text });
}

function isZeroTime(s) {
  return !s || s.startsWith("0001-01-01");
}

function fmtTime(s) {
  if (isZeroTime(s)) return "—";
  const d = new Date(s);
  return d.toLocaleString(undefined, { year: "numeric", month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function ago(s) {
  if (isZeroTime(s)) return "never";
  const secs = Math.round((Date.now() - new Date(s).getTime()) / 1000);
  const abs = Math.abs(secs);
  let v;
  if (abs < 60) v = abs + "s";
  else if (abs < 3600) v = Math.round(abs / 60) + "m";
  else if (abs < 86400) v = Math.round(abs / 3600) + "h";
  else v = Math.round(abs / 86400) + "d";
  return secs >= 0 ? v + " ago" : "in " + v;
}

function timeCell(s) {
  return el("td", { title: s || "" }, fmtTime(s), el("span", { class: "sub", text: isZeroTime(s) ? "" : ago(s) }));
}

function fmtDuration(ms) {
  if (ms === undefined || ms === null) return "—";
  if (ms < 1000) return ms + " ms";
  if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
  return Math.floor(ms / 60000) + "m" + Math.round((ms % 60000) / 1000) + "s";
}

function targetSummary(t) {
  if (!t) return "";
  if (t.type === "http" && t.http) return (t.http.method || "POST") + " " + t.http.url;
  if (t.type === "amqp" && t.amqp) return "AMQP " + (t.amqp.exchange || "(default)") + " → " + t.amqp.routing_key;
  if (t.type === "shell" && t.shell) return "$ " + (t.shell.command || []).join(" ");
  return t.type;
}

const jobPath = (name) => "/api/v1/jobs/" + encodeURIComponent(name);

// ---- Confirmation ---------------------------------------------------------

function confirmDialog(text, okLabel) {
  const dlg = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = okLabel;
  dlg.returnValue = "";
  dlg.showModal();
  return new Promise((resolve) => {
    dlg.addEventListener("close", () => resolve(dlg.returnValue === "ok"), { once: true });
  });
}

// ---- Cluster page ---------------------------------------------------------

async function clusterPage() {
  const set = (id, v) => { document.getElementById(id).textContent = v; };
  async function refresh() {
    let c;
    try {
      c = await api("GET", "/api/v1/cluster");
    } catch (e) {
      showError("Reading the cluster", e);
      return;
    }
    document.getElementById("flash").hidden = true;
    const ex = c.executor;
    set("executor-instance", ex ? ex.instance : "none: no live executor");
    set("executor-dc", ex ? ex.datacenter || "—" : "—");
    set("executor-epoch", ex ? String(ex.epoch) : "—");
    set("executor-since", ex ? fmtTime(ex.since) + " (" + ago(ex.since) + ")" : "—");
    document.getElementById("executor-card").classList.toggle("bad", !ex);
    const tok = c.token || {};
    const wd = tok.watchdog || {};
    const elc = tok.elector || {};
    if (c.self) setServedBy(c.self);
    set("token-seen-by", body.dataset.instance);
    set("wd-last-check", isZeroTime(wd.last_check) ? "not yet" : ago(wd.last_check));
    set("wd-lease-live", wd.lease_live ? "yes" : "no");
    set("wd-queue", String(wd.queue_ready ?? "—"));
    set("wd-reinserts", String(wd.reinserts ?? 0) + (wd.bootstraps ? " (+" + wd.bootstraps + " first token)" : ""));
    set("wd-duplicates", String(elc.stale_tokens_removed ?? 0));
    set("wd-rotations", String(elc.rotations ?? 0));
    set("wd-problem", wd.last_problem || elc.last_error || "none");
    const rows = (c.instances || []).map((i) => {
      const isExec = ex && ex.instance === i.id;
      // Instances heartbeat every second; a silent one keeps the role it
      // last reported, which must not read as current.
      const stale = !isExec && i.role !== "stopped" && Date.now() - new Date(i.last_seen).getTime() > STALE_MS;
      let role = badge(i.role);
      if (isExec) role = badge("executor");
      else if (stale) role = badge("not seen (last: " + i.role + ")", "stale");
      else if (i.role === "executor") role = badge("standby"); // its term just ended
      return el("tr", { "data-id": i.id, "data-role": isExec ? "executor" : stale ? "stale" : i.role },
        el("td", {}, el("b", { text: i.id }), i.id === body.dataset.instance ? el("span", { class: "sub", text: "serving this page" }) : null),
        el("td", { text: i.datacenter || "—" }),
        el("td", {}, role),
        timeCell(i.last_seen));
    });
    document.querySelector("#instances tbody").replaceChildren(...rows);
    set("refreshed", "updated " + new Date().toLocaleTimeString());
  }
  await refresh();
  setInterval(refresh, 2000);
}

// ---- Jobs page ------------------------------------------------------------

const descriptions = new Map(); // "schedule|tz" -> description

async function describe(schedule, tz) {
  const key = schedule + "|" + (tz || "UTC");
  if (!descriptions.has(key)) {
    descriptions.set(key, api("GET", "/api/v1/schedule/preview?count=1&schedule=" + encodeURIComponent(schedule) +
      "&timezone=" + encodeURIComponent(tz || "UTC")).then((p) => p.description, () => ""));
  }
  return descriptions.get(key);
}

async function jobsPage() {
  const params = new URLSearchParams(location.search);
  document.getElementById("filter-name").value = params.get("name") || "";
  document.getElementById("filter-label").value = params.get("label") || "";
  const tbody = document.querySelector("#jobs tbody");
  const more = document.getElementById("jobs-more");
  const pageSize = 200;
  let after = "";

  document.getElementById("filter").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    const n = document.getElementById("filter-name").value.trim();
    const l = document.getElementById("filter-label").value.trim();
    if (n) q.set("name", n);
    if (l) q.set("label", l);
    location.search = q.toString();
  });

  async function load(append) {
    const q = new URLSearchParams({ limit: String(pageSize) });
    if (params.get("name")) q.set("name", params.get("name"));
    if (params.get("label")) q.set("label", params.get("label"));
    if (append && after) q.set("after", after);
    let data;
    try {
      data = await api("GET", "/api/v1/jobs?" + q);
    } catch (e) {
      showError("Listing jobs", e);
      return;
    }
    const jobs = data.jobs || [];
    const rows = jobs.map(jobRow);
    if (append) tbody.append(...rows); else tbody.replaceChildren(...rows);
    after = jobs.length ? jobs[jobs.length - 1].name : "";
    more.hidden = jobs.length < pageSize;
    document.getElementById("jobs-empty").hidden = tbody.children.length > 0;
  }

  function jobRow(j) {
    const desc = el("span", { class: "sub" });
    describe(j.schedule, j.timezone).then((d) => { desc.textContent = d; });
    const last = j.last_run;
    const tr = el("tr", { "data-job": j.name },
      el("td", {}, el("a", { href: "/jobs/" + encodeURIComponent(j.name) + "/runs", text: j.name }),
        j.description ? el("span", { class: "sub", text: j.description }) : null,
        j.labels ? el("span", { class: "sub", text: Object.entries(j.labels).map(([k, v]) => k + "=" + v).join(" ") }) : null),
      el("td", {}, el("code", { text: j.schedule }), desc),
      el("td", { text: j.timezone || "UTC" }),
      el("td", { class: "mono", text: targetSummary(j.target) }),
      j.paused ? el("td", { class: "muted", text: "paused" }) : timeCell(j.next_run_at),
      el("td", {}, last ? badge(last.status) : el("span", { class: "muted", text: "—" }),
        last ? el("span", { class: "sub", text: ago(last.finished_at) }) : null),
      el("td", { class: "num", title: "runs / succeeded / failed" }, `${j.run_count} / ${j.success_count} / ${j.failure_count}`),
      el("td", {}, j.paused ? badge("paused") : badge("active")),
      actions(j));
    return tr;
  }

  function actions(j) {
    const td = el("td", { class: "actions" });
    const act = async (btn, what, fn) => {
      btn.disabled = true;
      try {
        await fn();
        flash("ok", what + ": done.");
        await load(false);
      } catch (e) {
        showError(what, e);
      } finally {
        btn.disabled = false;
      }
    };
    const toggle = el("button", { type: "button", class: j.paused ? "act-resume" : "act-pause", text: j.paused ? "Resume" : "Pause" });
    toggle.addEventListener("click", () => act(toggle, (j.paused ? "Resume " : "Pause ") + j.name,
      () => api("POST", jobPath(j.name) + (j.paused ? "/resume" : "/pause"))));
    const run = el("button", { type: "button", class: "act-trigger", text: "Run now" });
    run.addEventListener("click", () => act(run, "Run " + j.name, () => api("POST", jobPath(j.name) + "/trigger")));
    const edit = el("a", { class: "button act-edit", href: "/jobs/" + encodeURIComponent(j.name) + "/edit", text: "Edit" });
    const del = el("button", { type: "button", class: "danger act-delete", text: "Delete" });
    del.addEventListener("click", async () => {
      if (!(await confirmDialog("Delete job " + j.name + "? Its schedule stops at once. This cannot be undone.", "Delete " + j.name))) return;
      act(del, "Delete " + j.name, () => api("DELETE", jobPath(j.name)));
    });
    td.append(toggle, run, edit, del);
    return td;
  }

  more.addEventListener("click", () => load(true));
  await load(false);
  setInterval(() => { if (!after || more.hidden) load(false); }, 5000);
}

// ---- Job form -------------------------------------------------------------

function linesToMap(text, sep) {
  const out = {};
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line) continue;
    const i = line.indexOf(sep);
    if (i < 0) throw new APIError(0, "invalid_argument", "each line must look like name" + sep + " value, got " + JSON.stringify(line));
    out[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  return Object.keys(out).length ? out : undefined;
}

function mapToLines(m, sep) {
  return Object.entries(m || {}).map(([k, v]) => k + sep + v).join("\n");
}

function splitList(s) {
  return s.split(/[,\s]+/).map((x) => x.trim()).filter(Boolean);
}

async function jobPage() {
  const name = body.dataset.job;
  const editing = !!name;
  const $ = (id) => document.getElementById(id);
  const form = $("job-form");

  function showTarget() {
    const type = $("f-type").value;
    for (const div of document.querySelectorAll(".target")) div.hidden = div.dataset.target !== type;
  }
  $("f-type").addEventListener("change", showTarget);

  // Live schedule preview, debounced, ignoring answers to stale input.
  let previewSeq = 0;
  let previewTimer;
  async function preview() {
    const seq = ++previewSeq;
    const schedule = $("f-schedule").value.trim();
    const tz = $("f-timezone").value.trim() || "UTC";
    const box = $("preview");
    const desc = $("preview-description");
    const list = $("preview-next");
    if (!schedule) {
      box.className = "preview";
      desc.className = "muted";
      desc.textContent = "Type a schedule: 5-field cron, 6 fields with seconds first, @daily, @every 30s…";
      list.replaceChildren();
      return;
    }
    try {
      const p = await api("GET", "/api/v1/schedule/preview?count=5&schedule=" + encodeURIComponent(schedule) + "&timezone=" + encodeURIComponent(tz));
      if (seq !== previewSeq) return;
      box.className = "preview ok";
      desc.className = "";
      desc.textContent = p.description + " (" + p.timezone + "). Next five:";
      list.replaceChildren(...p.next.map((t) => el("li", { text: t })));
      $("f-schedule").classList.remove("invalid");
      $("f-timezone").classList.remove("invalid");
    } catch (e) {
      if (seq !== previewSeq) return;
      box.className = "preview bad";
      desc.className = "error";
      desc.textContent = e.message;
      list.replaceChildren();
      $(e.field === "timezone" ? "f-timezone" : "f-schedule").classList.add("invalid");
    }
  }
  for (const id of ["f-schedule", "f-timezone"]) {
    $(id).addEventListener("input", () => { clearTimeout(previewTimer); previewTimer = setTimeout(preview, 200); });
  }

  function fill(j) {
    $("f-name").value = j.name;
    $("f-name").readOnly = true;
    $("f-description").value = j.description || "";
    $("f-labels").value = Object.entries(j.labels || {}).map(([k, v]) => k + "=" + v).join(", ");
    $("f-paused").checked = !!j.paused;
    $("f-schedule").value = j.schedule;
    $("f-timezone").value = j.timezone || "UTC";
    const t = j.target || {};
    $("f-type").value = t.type;
    if (t.http) {
      $("f-http-method").value = t.http.method || "POST";
      $("f-http-url").value = t.http.url || "";
      $("f-http-headers").value = mapToLines(t.http.headers, ": ");
      $("f-http-secret").value = (t.http.secret_headers || []).join(", ");
      $("f-http-body").value = t.http.body || "";
      $("f-http-codes").value = (t.http.success_codes || []).join(", ");
    }
    if (t.amqp) {
      $("f-amqp-exchange").value = t.amqp.exchange || "";
      $("f-amqp-key").value = t.amqp.routing_key || "";
      $("f-amqp-headers").value = mapToLines(t.amqp.headers, ": ");
      $("f-amqp-body").value = t.amqp.body || "";
    }
    if (t.shell && $("f-shell-command")) {
      $("f-shell-command").value = (t.shell.command || []).join("\n");
      $("f-shell-shell").checked = !!t.shell.shell;
      $("f-shell-dir").value = t.shell.dir || "";
      $("f-shell-env").value = mapToLines(t.shell.env, "=");
    }
    $("f-misfire").value = j.misfire || "fire_once";
    $("f-deadline").value = j.starting_deadline || "";
    $("f-concurrency").value = j.concurrency || "forbid";
    if (j.retry) {
      $("f-retry-max").value = j.retry.max_attempts || "";
      $("f-retry-backoff").value = j.retry.backoff || "";
      $("f-retry-maxbackoff").value = j.retry.max_backoff || "";
    }
    $("f-timeout").value = j.timeout || "";
    $("f-jitter").value = j.jitter || "";
  }

  function collect() {
    const v = (id) => $(id).value.trim();
    const j = {
      name: v("f-name"),
      schedule: v("f-schedule"),
      timezone: v("f-timezone") || "UTC",
      paused: $("f-paused").checked,
      misfire: v("f-misfire"),
      concurrency: v("f-concurrency"),
    };
    if (v("f-description")) j.description = v("f-description");
    const labels = {};
    for (const pair of v("f-labels").split(",").map((s) => s.trim()).filter(Boolean)) {
      const i = pair.indexOf("=");
      if (i < 1) throw new APIError(0, "invalid_argument", "labels look like key=value, key2=value2", "labels");
      labels[pair.slice(0, i).trim()] = pair.slice(i + 1).trim();
    }
    if (Object.keys(labels).length) j.labels = labels;
    for (const [id, key] of [["f-deadline", "starting_deadline"], ["f-timeout", "timeout"], ["f-jitter", "jitter"]]) {
      if (v(id)) j[key] = v(id);
    }
    if (v("f-retry-max")) {
      j.retry = { max_attempts: Number(v("f-retry-max")) };
      if (v("f-retry-backoff")) j.retry.backoff = v("f-retry-backoff");
      if (v("f-retry-maxbackoff")) j.retry.max_backoff = v("f-retry-maxbackoff");
    }
    const type = v("f-type");
    j.target = { type };
    const field = (f, fn) => {
      try { return fn(); } catch (e) { e.field = f; throw e; }
    };
    if (type === "http") {
      const h = { method: v("f-http-method"), url: v("f-http-url") };
      h.headers = field("target.http.headers", () => linesToMap($("f-http-headers").value, ":"));
      const secret = splitList(v("f-http-secret"));
      if (secret.length) h.secret_headers = secret;
      if ($("f-http-body").value) h.body = $("f-http-body").value;
      const codes = splitList(v("f-http-codes"));
      if (codes.length) h.success_codes = codes.map(Number);
      j.target.http = h;
    } else if (type === "amqp") {
      const a = { exchange: v("f-amqp-exchange"), routing_key: v("f-amqp-key") };
      a.headers = field("target.amqp.headers", () => linesToMap($("f-amqp-headers").value, ":"));
      if ($("f-amqp-body").value) a.body = $("f-amqp-body").value;
      j.target.amqp = a;
    } else if (type === "shell") {
      const s = { command: $("f-shell-command").value.split("\n").map((x) => x.trim()).filter(Boolean) };
      if ($("f-shell-shell").checked) s.shell = true;
      if (v("f-shell-dir")) s.dir = v("f-shell-dir");
      s.env = field("target.shell.env", () => linesToMap($("f-shell-env").value, "="));
      j.target.shell = s;
    }
    return j;
  }

  function markField(f) {
    for (const e of form.querySelectorAll(".invalid")) e.classList.remove("invalid");
    if (!f) return;
    // The API names fields like target.http.url or target.http.headers.X.
    let input = null;
    for (let key = f; key && !input; key = key.includes(".") ? key.slice(0, key.lastIndexOf(".")) : "") {
      input = form.querySelector(`[data-field="${CSS.escape(key)}"]`);
    }
    if (input) {
      input.classList.add("invalid");
      input.focus();
    }
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const save = $("save");
    save.disabled = true;
    try {
      const j = collect();
      if (editing) await api("PUT", jobPath(name), j);
      else await api("POST", "/api/v1/jobs", j);
      location.href = "/jobs/" + encodeURIComponent(j.name) + "/runs?saved=1";
    } catch (e) {
      markField(e.field);
      showError(editing ? "Saving " + name : "Creating the job", e);
    } finally {
      save.disabled = false;
    }
  });

  if (editing) {
    $("job-title").textContent = "Edit " + name;
    try {
      fill(await api("GET", jobPath(name)));
    } catch (e) {
      showError("Loading " + name, e);
    }
  }
  showTarget();
  preview();
}

// ---- Runs page ------------------------------------------------------------

async function runsPage() {
  const name = body.dataset.job;
  const params = new URLSearchParams(location.search);
  const status = $id("runs-status");
  status.value = params.get("status") || "";
  if (params.get("saved")) flash("ok", "Saved " + name + ".");
  const tbody = document.querySelector("#runs tbody");
  const more = $id("runs-more");
  let before = "";
  if (name) {
    $id("runs-title").textContent = "Runs of " + name;
    $id("runs-job-links").hidden = false;
    $id("runs-edit").href = "/jobs/" + encodeURIComponent(name) + "/edit";
    for (const c of document.querySelectorAll(".col-job")) c.hidden = true;
    $id("runs-trigger").addEventListener("click", async () => {
      try {
        await api("POST", jobPath(name) + "/trigger");
        flash("ok", "Triggered " + name + ".");
        load(false);
      } catch (e) {
        showError("Run " + name, e);
      }
    });
  } else {
    $id("runs-title").textContent = status.value ? "Runs across all jobs: " + status.value : "Runs across all jobs";
  }
  $id("runs-filter").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    if (status.value) q.set("status", status.value);
    location.search = q.toString();
  });

  function row(r) {
    let errText = r.error || r.reason || "";
    if (r.http_status) errText = "HTTP " + r.http_status + (errText ? ": " + errText : "");
    return el("tr", { "data-fire": r.fire_id, "data-status": r.status },
      name ? null : el("td", {}, el("a", { href: "/jobs/" + encodeURIComponent(r.job) + "/runs", text: r.job })),
      timeCell(r.scheduled_at),
      el("td", {}, badge(r.status)),
      el("td", { text: r.trigger }),
      el("td", { class: "num", text: String(r.attempts || 0) }),
      el("td", { class: "num", text: r.started_at ? fmtDuration(r.duration_ms) : "—" }),
      el("td", { text: (r.instance || "—") + " · " + r.epoch }),
      el("td", { class: "mono", text: errText }));
  }

  async function load(append) {
    const q = new URLSearchParams({ limit: "50" });
    if (status.value) q.set("status", status.value);
    if (append && before) q.set("before", before);
    let data;
    try {
      data = await api("GET", (name ? jobPath(name) + "/runs?" : "/api/v1/runs?") + q);
    } catch (e) {
      showError("Listing runs", e);
      return;
    }
    const rows = (data.runs || []).map(row);
    if (append) tbody.append(...rows); else tbody.replaceChildren(...rows);
    before = data.next_before || "";
    more.hidden = !before;
    $id("runs-empty").hidden = tbody.children.length > 0;
  }
  more.addEventListener("click", () => load(true));
  await load(false);
  setInterval(() => { if ($id("runs-auto").checked && !tbody.querySelector("tr:nth-child(51)")) load(false); }, 3000);
}

function $id(id) {
  return document.getElementById(id);
}

// ---- Start ----------------------------------------------------------------

function setServedBy(id) {
  body.dataset.instance = id;
  document.getElementById("served-by").textContent = id;
  document.querySelector(".served").hidden = !id;
}

// When reads need a token the page is served without the instance's id;
// ask the API which instance answers (the cluster page does so itself).
async function whoami() {
  try {
    const c = await api("GET", "/api/v1/cluster");
    if (c.self) setServedBy(c.self);
  } catch (e) {
    // The page's own calls report errors.
  }
}

setupLogin();
document.querySelector(".served").hidden = !body.dataset.instance;
if (!body.dataset.instance && body.dataset.page !== "cluster") whoami();
const pages = { cluster: clusterPage, jobs: jobsPage, job: jobPage, runs: runsPage };
(pages[body.dataset.page] || (() => {}))().catch((e) => showError("Loading the page", e));

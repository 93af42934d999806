// Run lifecycle in the workspace (SPEC JOB-5, JOB-6): the cleanup dialog (rules, "Calculate
// size" as a job with its progress, "Clean up" after a confirmation with the total size) and
// the live export (start, "Live export running" with "Update live export" and "Stop").
// Everything goes through the JSON API with the session cookie.
const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

async function api(method, url, body) {
  const options = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    options.body = JSON.stringify(body);
    options.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(url, options);
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!response.ok) throw new Error((data && data.detail) || `${response.status} ${response.statusText}`);
  return data;
}

function humanBytes(n) {
  const units = ["bytes", "kB", "MB", "GB", "TB", "PB"];
  let value = n;
  let i = 0;
  while (value >= 1000 && i < units.length - 1) { value /= 1000; i += 1; }
  return i ? `${value.toFixed(value < 10 ? 2 : 1)} ${units[i]}` : `${n} bytes`;
}

function showError(form, message) {
  const slot = form.querySelector(".form-error");
  if (slot) slot.textContent = message;
}

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

// Wait for a job to end, reporting its progress; returns the finished job.
async function followJob(jobId, onProgress) {
  for (;;) {
    const job = await api("GET", `/api/v1/jobs/${jobId}`);
    onProgress?.(job);
    if (!["waiting", "running"].includes(job.status)) return job;
    await sleep(400);
  }
}

// --- cleanup ----------------------------------------------------------------------------------
const cleanup = $("#cleanup-dialog");
let overview = null;

function chosenRules() {
  return $$("#cleanup-rules input[name=rules]:checked").map((box) => box.value);
}

function renderRules() {
  const box = $("#cleanup-rules");
  const checked = new Set(chosenRules());
  const legend = document.createElement("legend");
  legend.textContent = "What to remove";
  const rows = overview.rules.map((rule) => {
    const row = document.createElement("div");
    row.className = "cleanup-rule";
    const label = document.createElement("label");
    label.className = "check";
    const input = document.createElement("input");
    Object.assign(input, { type: "checkbox", name: "rules", value: rule.name, id: `cleanup-rule-${rule.name}` });
    input.style.width = "auto";
    input.checked = checked.has(rule.name);
    const size = document.createElement("small");
    size.className = "rule-size muted";
    size.dataset.rule = rule.name;
    const known = overview.sizes && overview.sizes[rule.name];
    if (known) {
      size.textContent = `${known.files.toLocaleString()} files, ${humanBytes(known.size_bytes)}`;
      size.title = `${known.size_bytes.toLocaleString()} bytes`;
    }
    label.append(input, ` ${rule.label} `, size);
    const hint = document.createElement("p");
    hint.className = "hint";
    hint.textContent = rule.description;
    row.append(label, hint);
    return row;
  });
  box.replaceChildren(legend, ...rows);
  box.removeAttribute("aria-busy");
  const state = $("#cleanup-sizes-state");
  state.textContent = overview.sizes
    ? `Sizes calculated ${new Date(overview.sizes_computed_at).toLocaleString()}.`
    : "Sizes not calculated yet: use Calculate size.";
  syncConfirm(false);
}

async function loadCleanup() {
  overview = await api("GET", `/api/v1/elements/${cleanup.dataset.element}/cleanup`);
  renderRules();
  if (overview.sizes_job) await watchSizes(overview.sizes_job.id);
}

async function watchSizes(jobId) {
  const bar = $("#cleanup-progress");
  const state = $("#cleanup-sizes-state");
  bar.hidden = false;
  bar.value = 0;
  state.textContent = "Calculating the sizes…";
  const job = await followJob(jobId, (j) => { bar.value = j.progress; });
  bar.hidden = true;
  if (job.status !== "completed") throw new Error(`The size calculation ${job.status}: ${job.message}`);
  overview = await api("GET", `/api/v1/elements/${cleanup.dataset.element}/cleanup`);
  renderRules();
}

async function calculate() {
  const started = await api("POST", `/api/v1/elements/${cleanup.dataset.element}/cleanup/sizes`);
  await watchSizes(started.job_id);
}

function syncConfirm(show) {
  const confirm = $("#cleanup-confirm");
  const yes = $("#cleanup-confirm-button");
  const submit = $("#cleanup-submit");
  if (!show) {
    confirm.hidden = true;
    if (yes) yes.hidden = true;
    if (submit) submit.hidden = false;
    return;
  }
  const rules = chosenRules();
  const files = rules.reduce((sum, name) => sum + overview.sizes[name].files, 0);
  const bytes = rules.reduce((sum, name) => sum + overview.sizes[name].size_bytes, 0);
  $("#cleanup-total").textContent = `${files.toLocaleString()} files, ${humanBytes(bytes)}`;
  $("#cleanup-total").title = `${bytes.toLocaleString()} bytes`;
  $("#cleanup-what").textContent = overview.rules.filter((r) => rules.includes(r.name)).map((r) => r.label.toLowerCase()).join(", ");
  confirm.hidden = false;
  yes.hidden = false;
  submit.hidden = true;
  yes.focus();
}

async function askCleanup() {
  if (!chosenRules().length) throw new Error("Choose at least one kind of file to remove.");
  if (!overview.sizes) await calculate();
  syncConfirm(true);
}

async function runCleanup() {
  await api("POST", `/api/v1/elements/${cleanup.dataset.element}/cleanup`, { rules: chosenRules() });
  window.location.assign("/jobs");
}

if (cleanup) {
  const form = $("#cleanup-form");
  const guard = (action) => async () => {
    showError(form, "");
    try { await action(); } catch (error) { showError(form, error.message); }
  };
  document.addEventListener("click", (event) => {
    if (event.target.closest('[data-open="cleanup-dialog"]')) guard(loadCleanup)();
  });
  $("#cleanup-calculate").addEventListener("click", guard(calculate));
  $("#cleanup-submit")?.addEventListener("click", guard(askCleanup));
  $("#cleanup-confirm-button")?.addEventListener("click", guard(runCleanup));
  form.addEventListener("change", () => { if (overview) syncConfirm(false); });
  form.addEventListener("submit", (event) => event.preventDefault());
}

// --- live export ------------------------------------------------------------------------------
const live = $("#live-export-dialog");
let running = null;  // the live export under way, as GET …/live-export gives it
let mode = "start";

function setMode(next) {
  mode = next;
  $("#live-export-start-fields").hidden = next !== "start";
  $("#live-export-filter-hint").hidden = next === "start";
  const title = $("#live-export-title");
  const submit = $("#live-export-submit");
  title.textContent = title.dataset[next];
  submit.textContent = submit.dataset[next];
  $("#live-export-filter").value = next === "update" && running ? running.filter.status : "all";
}

async function refreshLiveExport() {
  const indicator = $("#live-export-running");
  if (!live || !indicator) return;
  const state = await api("GET", `/api/v1/elements/${live.dataset.element}/live-export`);
  running = state.live_export;
  indicator.hidden = !running;
  const start = $("#live-export-current");
  if (start) start.hidden = Boolean(running);
  if (running) {
    $("#live-export-filter-state").textContent = running.filter.status === "completed" ? "completed items" : "all items";
    indicator.title = `${running.public_path}: ${running.message || running.status}`;
    $("#live-export-stop").disabled = false;
  }
}

async function submitLiveExport() {
  const element = live.dataset.element;
  const filter = { status: $("#live-export-filter").value };
  if (mode === "update") {
    await api("PATCH", `/api/v1/elements/${element}/live-export`, { filter });
    live.close();
    await refreshLiveExport();
    return;
  }
  const raw = $("#live-export-raw").checked;
  const processed = $("#live-export-processed").checked;
  const metadata = $("#live-export-metadata").checked;
  await api("POST", `/api/v1/elements/${element}/live-export`, {
    folder: $("#live-export-folder").value, files: raw || processed, raw, processed, metadata,
    filter,
  });
  window.location.assign("/jobs");
}

async function stopLiveExport() {
  if (!running) return;
  $("#live-export-stop").disabled = true;
  $("#live-export-filter-state").textContent = "stopping…";
  await api("POST", `/api/v1/jobs/${running.job_id}/cancel`);
  for (let i = 0; i < 60 && running; i += 1) {
    await sleep(500);
    await refreshLiveExport();
  }
}

if (live) {
  const form = $("#live-export-form");
  document.addEventListener("click", (event) => {
    if (event.target.closest('[data-open="live-export-dialog"]')) setMode("start");
    if (event.target.closest("#live-export-update")) {
      setMode("update");
      live.showModal();
    }
    if (event.target.closest("#live-export-stop")) stopLiveExport().catch((error) => { window.alert(error.message); });
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(form, "");
    try { await submitLiveExport(); } catch (error) { showError(form, error.message); }
  });
  $("#live-export-folder").addEventListener("input", () => {
    const where = $("#live-export-where");
    const folder = $("#live-export-folder").value.trim().replace(/^\/+|\/+$/g, "");
    const base = where.dataset.public ? `${where.dataset.public.replace(/\/+$/, "")}/` : "";
    where.textContent = `${base}${folder ? `${folder}/` : ""}${where.dataset.name}_<date-time>`;
  });
  refreshLiveExport().catch(() => {});
  document.addEventListener("htmx:afterSwap", () => { refreshLiveExport().catch(() => {}); });
}

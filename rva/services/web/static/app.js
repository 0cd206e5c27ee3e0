// The RVA page: live video, the current count, a chart of the people series. No libraries,
// no CDN: the appliance's LAN may have no internet.
"use strict";
const $ = (id) => document.getElementById(id);
let camera = null;

async function getJSON(url) {
  const r = await fetch(url, { cache: "no-store", signal: AbortSignal.timeout(4000) });
  if (!r.ok && r.status !== 503) throw new Error(url + ": " + r.status);
  return r.json();
}

const NONE = "—"; // a number that is not there, or too old to show
function fmt(v, digits) { return v === undefined || v === null ? NONE : Number(v).toFixed(digits); }
function ago(s) { return s < 1.5 ? "now" : Math.round(s) + " s ago"; }
// How old a number is decides how it is shown (rva.health.freshness): live as is,
// stale greyed with its age, idle or none not at all.
const shown = (state) => state === "live" || state === "stale";
let lastHeard = 0; // Date.now() of the last summary

// The camera in use: "auto → V4L2 /dev/video0 (UVC Camera)", or what it waits for.
function describeSource(src) {
  if (!src.configured) return "–";
  // "auto → V4L2 /dev/video0"; a source its description already names is shown once.
  const name = !src.in_use ? src.configured
    : src.in_use.includes(src.configured) ? src.in_use : src.configured + " → " + src.in_use;
  return src.state === "capturing" ? name : name + " (" + (src.detail || src.state) + ")";
}

async function refreshSummary() {
  try {
    const s = await getJSON("/api/summary?camera=" + encodeURIComponent(camera));
    // The count is the one on the video's label (the same result), with its age.
    $("people").textContent = s.people === null || !shown(s.people_state) ? NONE : String(s.people);
    $("people").dataset.result = s.result_id || "";
    $("people").classList.toggle("stale", s.people_state !== "live");
    $("people-age").textContent = s.people_state === "none" ? "nothing counted yet"
      : s.people_state === "idle" ? "detector idle: last count " + ago(s.people_age_s)
      : "counted " + ago(s.people_age_s);
    const v = shown(s.values_state) ? s.latest : {};
    $("in_fps").textContent = fmt(v.in_fps, 1);
    $("out_fps").textContent = fmt(v.out_fps, 1);
    $("prf_model").textContent = fmt(v.prf_model, 0);
    $("prf_total").textContent = fmt(v.prf_total, 0);
    $("rates").classList.toggle("stale", s.values_state !== "live");
    $("values-age").textContent = s.values_state === "none" ? NONE : ago(s.values_age_s);
    $("timeseries").textContent = s.timeseries;
    $("source").textContent = describeSource(s.source || {});
    $("status").textContent = s.status;
    $("status").className = "badge " + s.status;
    $("problems").replaceChildren(...s.problems.map((p) => {
      const li = document.createElement("li"); li.textContent = p; return li;
    }));
    lastHeard = Date.now();
    $("updated").textContent = "updated " + new Date(lastHeard).toLocaleTimeString();
    $("side").classList.remove("stale");
  } catch (e) {
    $("status").textContent = "unreachable"; $("status").className = "badge down";
    checkHeard();
  }
}

// rva web not answering: nothing on the page is live any more.
function checkHeard() {
  if (Date.now() - lastHeard < 5000) return;
  $("side").classList.add("stale");
  $("updated").textContent = lastHeard ? "last updated " + new Date(lastHeard).toLocaleTimeString() + " (not answering)" : "not updated yet";
}

// The chart spans the whole range up to now; where points are further apart than a few steps
// nothing was counted, and the line stops there (a gap, not a straight line across it).
function drawChart(d) {
  const points = d.points || [], dpr = devicePixelRatio;
  const c = $("chart"), ctx = c.getContext("2d");
  const w = (c.width = c.clientWidth * dpr), h = (c.height = c.clientHeight * dpr);
  ctx.clearRect(0, 0, w, h);
  ctx.font = 12 * dpr + "px system-ui"; ctx.fillStyle = "#8a96a3";
  const left = 48 * dpr, right = 14 * dpr, top = 10 * dpr, bottom = 38 * dpr;
  const t0 = d.start_ms ?? (points.length ? points[0][0] : 0);
  const t1 = d.end_ms ?? (points.length ? points[points.length - 1][0] : 1);
  const peak = Math.max(1, Math.ceil(Math.max(0, ...points.map((p) => p[1]))));
  const tick = Math.ceil(peak / 4), vmax = tick * Math.ceil(peak / tick); // whole people
  const ticks = [];
  for (let v = 0; v <= vmax; v += tick) ticks.push(v);
  const x = (t) => left + ((t - t0) / Math.max(1, t1 - t0)) * (w - left - right);
  const y = (v) => h - bottom - (v / vmax) * (h - top - bottom);
  ctx.strokeStyle = "#2a323b"; ctx.lineWidth = 1;
  ctx.textAlign = "right";
  for (const v of ticks) {
    ctx.beginPath(); ctx.moveTo(left, y(v)); ctx.lineTo(w - right, y(v)); ctx.stroke();
    ctx.fillText(String(v), left - 6 * dpr, y(v) + 4 * dpr);
  }
  ctx.save(); ctx.translate(12 * dpr, (top + h - bottom) / 2); ctx.rotate(-Math.PI / 2);
  ctx.textAlign = "center"; ctx.fillText("people", 0, 0); ctx.restore();
  const long = t1 - t0 > 3600 * 1000;
  const clock = (t) => new Date(t).toLocaleTimeString([], long ? { hour: "2-digit", minute: "2-digit" } : {});
  ctx.textAlign = "left"; ctx.fillText(clock(t0), left, h - bottom + 16 * dpr);
  ctx.textAlign = "center"; ctx.fillText(clock((t0 + t1) / 2), x((t0 + t1) / 2), h - bottom + 16 * dpr);
  ctx.textAlign = "right"; ctx.fillText("now", w - right, h - bottom + 16 * dpr);
  ctx.textAlign = "center"; ctx.fillText("time", (left + w - right) / 2, h - 4 * dpr);
  ctx.textAlign = "left";
  let segments = 0;
  const describe = () => { // for screen readers (and the tests): what the canvas shows
    c.dataset.ticks = ticks.join(" "); c.dataset.segments = String(segments);
    c.setAttribute("aria-label", "people over time, " + clock(t0) + " to now: " + (points.length
      ? "0 to " + vmax + " people, " + segments + " stretch(es) with counts" : "nothing counted"));
  };
  if (!points.length) {
    ctx.fillText("nothing counted in this range", left + 10 * dpr, (top + h - bottom) / 2); describe(); return;
  }
  const gap = Math.max(3 * (d.step_ms || 1000), 10000);
  ctx.strokeStyle = ctx.fillStyle = "#4cc38a"; ctx.lineWidth = 2 * dpr;
  let run = [];
  const flush = () => {
    if (run.length) segments++;
    if (run.length === 1) { ctx.beginPath(); ctx.arc(x(run[0][0]), y(run[0][1]), 2 * dpr, 0, 7); ctx.fill(); }
    else if (run.length) {
      ctx.beginPath(); run.forEach((p, i) => (i ? ctx.lineTo(x(p[0]), y(p[1])) : ctx.moveTo(x(p[0]), y(p[1])))); ctx.stroke();
    }
    run = [];
  };
  points.forEach((p, i) => { if (i && p[0] - points[i - 1][0] > gap) flush(); run.push(p); });
  flush();
  describe();
}

async function refreshChart() {
  try {
    const d = await getJSON("/api/people?camera=" + encodeURIComponent(camera) + "&minutes=" + $("range").value);
    if (!d.points) return; // Redis unreachable (503): keep the last chart and its source
    $("chart-source").textContent = d.source === "timeseries" ? "" : "(from the results stream: time series off)";
    drawChart(d);
  } catch (e) { /* keep the last chart */ }
}

// Counting lines and zones: today's in/out and occupancy now, greyed out when stale.
async function refreshCounts() {
  try {
    const c = await getJSON("/api/counts?camera=" + encodeURIComponent(camera));
    const names = Object.keys(c.lines || {}), zones = Object.keys(c.zones || {});
    $("counting").hidden = !names.length && !zones.length;
    const cell = (v) => { const td = document.createElement("td"); td.textContent = v === null || v === undefined ? "–" : String(v); return td; };
    $("lines").replaceChildren(...names.map((n) => {
      const tr = document.createElement("tr"), l = c.lines[n];
      tr.append(cell(n), cell(l.in_today), cell(l.out_today)); return tr;
    }));
    $("zones").replaceChildren(...zones.flatMap((n) => {
      const dt = document.createElement("dt"), dd = document.createElement("dd");
      dt.textContent = n + " now"; dd.textContent = c.zones[n].occupancy ?? "–"; return [dt, dd];
    }));
    $("counting").classList.toggle("stale", !!c.stale);
    $("counting-age").textContent = c.age_s === null ? "(nothing counted yet)" : c.stale ? "(stale: " + Math.round(c.age_s) + " s old)" : "";
  } catch (e) { $("counting").classList.add("stale"); }
}

// [web] video: "annotated", "blurred" (people pixelated by rva web) or "off" (counts only).
let videoMode = "annotated";
function showVideoMode(mode) {
  videoMode = mode || "annotated";
  const note = $("video-note");
  if (videoMode === "off") {
    $("video").removeAttribute("src");
    document.querySelector(".stage").style.display = "none";
    document.querySelector(".draw-tools").style.display = "none";
    note.textContent = "Video is off on this device ([web] video = \"off\"): counts only.";
  } else if (videoMode === "blurred") {
    $("video").alt = "live video, people pixelated";
    note.textContent = "People are pixelated before the video leaves the device ([web] video = \"blurred\").";
  }
  note.hidden = videoMode === "annotated";
}

function selectCamera(id) {
  camera = id;
  if (videoMode !== "off") $("video").src = "/video?camera=" + encodeURIComponent(id);
  refreshSummary(); refreshChart(); refreshCounts();
  if (typeof refreshShapes === "function") refreshShapes();
}

async function start() {
  const { cameras, video } = await getJSON("/api/cameras");
  showVideoMode(video);
  $("camera").replaceChildren(...cameras.map((id) => new Option(id, id)));
  $("camera").onchange = (e) => selectCamera(e.target.value);
  $("range").onchange = refreshChart;
  selectCamera(cameras[0]);
  setInterval(refreshSummary, 1000);
  setInterval(checkHeard, 1000);
  setInterval(refreshCounts, 2000);
  setInterval(refreshChart, 5000);
}
start();

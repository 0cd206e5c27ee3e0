// The RVA page: live video, the current count, a chart of the people series. No libraries,
// no CDN: the appliance's LAN may have no internet.
"use strict";
const $ = (id) => document.getElementById(id);
let camera = null;

async function getJSON(url) {
  const r = await fetch(url, { cache: "no-store" });
  if (!r.ok && r.status !== 503) throw new Error(url + ": " + r.status);
  return r.json();
}

function fmt(v, digits) { return v === undefined || v === null ? "–" : Number(v).toFixed(digits); }

// The camera in use: "auto → V4L2 /dev/video0 (UVC Camera)", or what it waits for.
function describeSource(src) {
  if (!src.configured) return "–";
  const name = src.in_use && src.in_use !== src.configured ? src.configured + " → " + src.in_use : src.configured;
  return src.state === "capturing" ? name : name + " (" + (src.detail || src.state) + ")";
}

async function refreshSummary() {
  try {
    const s = await getJSON("/api/summary?camera=" + encodeURIComponent(camera));
    $("people").textContent = s.people === null ? "–" : String(s.people);
    $("in_fps").textContent = fmt(s.latest.in_fps, 1);
    $("out_fps").textContent = fmt(s.latest.out_fps, 1);
    $("prf_model").textContent = fmt(s.latest.prf_model, 0);
    $("prf_total").textContent = fmt(s.latest.prf_total, 0);
    $("timeseries").textContent = s.timeseries;
    $("source").textContent = describeSource(s.source || {});
    $("status").textContent = s.status;
    $("status").className = "badge " + s.status;
    $("problems").replaceChildren(...s.problems.map((p) => {
      const li = document.createElement("li"); li.textContent = p; return li;
    }));
  } catch (e) {
    $("status").textContent = "unreachable"; $("status").className = "badge down";
  }
}

function drawChart(points) {
  const c = $("chart"), ctx = c.getContext("2d");
  const w = (c.width = c.clientWidth * devicePixelRatio), h = (c.height = c.clientHeight * devicePixelRatio);
  ctx.clearRect(0, 0, w, h);
  ctx.font = 12 * devicePixelRatio + "px system-ui"; ctx.fillStyle = "#8a96a3";
  if (points.length < 2) { ctx.fillText("waiting for data…", 10, h / 2); return; }
  const pad = 30 * devicePixelRatio;
  const t0 = points[0][0], t1 = points[points.length - 1][0];
  const vmax = Math.max(1, ...points.map((p) => p[1]));
  const x = (t) => pad + ((t - t0) / Math.max(1, t1 - t0)) * (w - 2 * pad);
  const y = (v) => h - pad - (v / vmax) * (h - 2 * pad);
  ctx.strokeStyle = "#2a323b"; ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const v = (vmax * i) / 4;
    ctx.beginPath(); ctx.moveTo(pad, y(v)); ctx.lineTo(w - pad, y(v)); ctx.stroke();
    ctx.fillText(v.toFixed(v < 4 ? 1 : 0), 2, y(v) + 4);
  }
  ctx.fillText(new Date(t0).toLocaleTimeString(), pad, h - 8);
  const last = new Date(t1).toLocaleTimeString();
  ctx.fillText(last, w - pad - ctx.measureText(last).width, h - 8);
  ctx.strokeStyle = "#4cc38a"; ctx.lineWidth = 2 * devicePixelRatio; ctx.beginPath();
  points.forEach((p, i) => (i ? ctx.lineTo(x(p[0]), y(p[1])) : ctx.moveTo(x(p[0]), y(p[1]))));
  ctx.stroke();
}

async function refreshChart() {
  try {
    const d = await getJSON("/api/people?camera=" + encodeURIComponent(camera) + "&minutes=" + $("range").value);
    if (!d.points) return; // Redis unreachable (503): keep the last chart and its source
    $("chart-source").textContent = d.source === "timeseries" ? "(RedisTimeSeries)" : "(results stream; time series off)";
    drawChart(d.points || []);
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

// Draw a line or zone on the live picture; the page gives the TOML to paste (it never writes
// the configuration itself: rva web has no write access to /etc/rva).
const drawing = { kind: null, points: [] };
function toFrame(ev) {
  const img = $("video"), r = img.getBoundingClientRect();
  return [Math.round((ev.clientX - r.left) * img.naturalWidth / r.width),
          Math.round((ev.clientY - r.top) * img.naturalHeight / r.height)];
}
function redrawSketch() {
  const cv = $("draw"), img = $("video"), ctx = cv.getContext("2d");
  cv.width = img.naturalWidth || 1; cv.height = img.naturalHeight || 1;
  ctx.clearRect(0, 0, cv.width, cv.height);
  ctx.strokeStyle = "#ffd700"; ctx.fillStyle = "#ffd700"; ctx.lineWidth = 3;
  const pts = drawing.points;
  ctx.beginPath(); pts.forEach((p, i) => (i ? ctx.lineTo(p[0], p[1]) : ctx.moveTo(p[0], p[1]))); ctx.stroke();
  pts.forEach((p) => { ctx.beginPath(); ctx.arc(p[0], p[1], 5, 0, 7); ctx.fill(); });
}
function finishSketch() {
  const p = drawing.points, pair = (q) => "[" + q[0] + ", " + q[1] + "]";
  let toml;
  if (drawing.kind === "line") {
    toml = "[cameras." + camera + ".lines.door]\npoints = [" + pair(p[0]) + ", " + pair(p[1]) + "]\nin_side = " + pair(p[2]) + "\n";
  } else {
    toml = "[cameras." + camera + ".zones.area]\npolygon = [" + p.map(pair).join(", ") + "]\n";
  }
  $("draw-toml").value = toml; $("draw-out").hidden = false;
  $("draw-hint").textContent = "rename door/area as you like";
  drawing.kind = null; $("draw").hidden = true;
}
function startSketch(kind) {
  drawing.kind = kind; drawing.points = []; $("draw").hidden = false; $("draw-out").hidden = true;
  $("draw-hint").textContent = kind === "line"
    ? "click the line's two ends, then a point on the side people walk INTO"
    : "click the corners; double-click the last one";
  redrawSketch();
}
function sketchClick(ev) {
  if (!drawing.kind) return;
  drawing.points.push(toFrame(ev)); redrawSketch();
  if (drawing.kind === "line" && drawing.points.length === 3) finishSketch();
}
function sketchDone(ev) {
  if (drawing.kind !== "zone") return;
  ev.preventDefault();
  // A double-click also sent two clicks on the same corner: keep one.
  const p = drawing.points;
  while (p.length > 1 && p[p.length - 1][0] === p[p.length - 2][0] && p[p.length - 1][1] === p[p.length - 2][1]) p.pop();
  if (p.length >= 3) finishSketch();
}

function selectCamera(id) {
  camera = id;
  $("video").src = "/video?camera=" + encodeURIComponent(id);
  refreshSummary(); refreshChart(); refreshCounts();
}

async function start() {
  const { cameras } = await getJSON("/api/cameras");
  $("camera").replaceChildren(...cameras.map((id) => new Option(id, id)));
  $("camera").onchange = (e) => selectCamera(e.target.value);
  $("range").onchange = refreshChart;
  selectCamera(cameras[0]);
  $("draw-line").onclick = () => startSketch("line");
  $("draw-zone").onclick = () => startSketch("zone");
  $("draw").onclick = sketchClick;
  $("draw").ondblclick = sketchDone;
  setInterval(refreshSummary, 1000);
  setInterval(refreshCounts, 2000);
  setInterval(refreshChart, 5000);
}
start();

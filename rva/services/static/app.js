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

function selectCamera(id) {
  camera = id;
  $("video").src = "/video?camera=" + encodeURIComponent(id);
  refreshSummary(); refreshChart();
}

async function start() {
  const { cameras } = await getJSON("/api/cameras");
  $("camera").replaceChildren(...cameras.map((id) => new Option(id, id)));
  $("camera").onchange = (e) => selectCamera(e.target.value);
  $("range").onchange = refreshChart;
  selectCamera(cameras[0]);
  setInterval(refreshSummary, 1000);
  setInterval(refreshChart, 5000);
}
start();

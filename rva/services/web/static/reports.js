// The Reports view: in/out per line, occupancy and mean dwell per zone, by the device's local
// hour (one day) or day (one month), from /api/report, as bars drawn by hand on canvases like
// app.js's chart. Days, hours and their labels are the device's (its time zone), not this
// browser's. No libraries, no CDN.
"use strict";
(() => {
  const el = (id) => document.getElementById(id);
  const COLOURS = { in: "#4cc38a", out: "#5b9bd5", occupancy_avg: "#c98a1b", occupancy_max: "#e8edf2", dwell_mean_s: "#b48ead" };
  const NAMES = { in: "in", out: "out", occupancy_avg: "average", occupancy_max: "peak", dwell_mean_s: "mean dwell (s)" };
  let shown = null; // the last report, redrawn when the window changes size

  function params() {
    const bucket = el("report-bucket").value;
    const p = new URLSearchParams({ camera: el("camera").value || "", bucket });
    const day = el("report-day").value, month = el("report-month").value;
    if (bucket === "hour" && day) { p.set("from", day); p.set("to", day); }
    if (bucket === "day" && month) p.set("from", month + "-01");
    return p;
  }

  async function load() {
    if (!el("reports").open) return;
    const p = params();
    el("report-csv").href = "/api/report?" + p + "&format=csv";
    el("report-note").textContent = "loading…";
    try {
      const r = await fetch("/api/report?" + p, { cache: "no-store", signal: AbortSignal.timeout(20000) });
      const d = await r.json();
      if (!r.ok) {
        el("report-note").textContent = d.error || "error " + r.status;
        el("report-charts").replaceChildren(); shown = null; return;
      }
      show(d);
    } catch (e) { el("report-note").textContent = "rva web is not answering"; }
  }

  function show(d) {
    shown = d;
    if (!el("report-day").value) el("report-day").value = d.from.slice(0, 10);
    if (!el("report-month").value) el("report-month").value = d.from.slice(0, 7);
    const span = d.bucket === "hour" ? d.from.slice(0, 10) : d.from.slice(0, 7);
    el("report-note").textContent = "camera " + d.camera + ", " + span + " (" + d.timezone + " time)" +
      (d.lines.length || d.zones.length ? "" : ": no lines or zones on this camera");
    const charts = [];
    for (const line of d.lines) {
      charts.push(chart("line", line.name, "line " + line.name + ": " + line.totals.in + " in, " + line.totals.out + " out",
        d, [["in", line.in, "bar"], ["out", line.out, "bar"]]));
    }
    for (const zone of d.zones) {
      charts.push(chart("zone", zone.name, "zone " + zone.name + ": people inside",
        d, [["occupancy_avg", zone.occupancy_avg, "bar"], ["occupancy_max", zone.occupancy_max, "tick"]]));
      charts.push(chart("dwell", zone.name, "zone " + zone.name + ": mean dwell",
        d, [["dwell_mean_s", zone.dwell_mean_s, "bar"]]));
    }
    el("report-charts").replaceChildren(...charts.map((c) => c.figure));
    charts.forEach((c) => c.draw());
  }

  function chart(kind, name, title, d, series) {
    const figure = document.createElement("figure"), caption = document.createElement("figcaption");
    const canvas = document.createElement("canvas");
    canvas.className = "report-chart"; canvas.dataset.kind = kind; canvas.dataset.name = name;
    caption.textContent = title + "  ";
    for (const [key] of series) {
      const key_ = document.createElement("span"); key_.className = "key";
      key_.style.setProperty("--c", COLOURS[key]); key_.textContent = NAMES[key]; caption.append(key_);
    }
    figure.append(caption, canvas);
    return { figure, draw: () => drawBars(canvas, d, series) };
  }

  // Bars side by side in each bucket; a "tick" series is a mark across the bucket (the peak).
  function drawBars(c, d, series) {
    const dpr = devicePixelRatio, ctx = c.getContext("2d");
    const w = (c.width = c.clientWidth * dpr), h = (c.height = c.clientHeight * dpr);
    ctx.clearRect(0, 0, w, h);
    ctx.font = 11 * dpr + "px system-ui"; ctx.fillStyle = "#8a96a3";
    const left = 44 * dpr, right = 10 * dpr, top = 8 * dpr, bottom = 22 * dpr;
    const n = d.buckets.length, values = series.flatMap((s) => s[1].filter((v) => v !== null));
    const peak = Math.max(0, ...values);
    const step = peak <= 4 ? 1 : Math.pow(10, Math.floor(Math.log10(peak / 4)));
    const tick = [1, 2, 5, 10].map((m) => m * step).find((t) => peak / t <= 5) || step * 10;
    const vmax = Math.max(tick, tick * Math.ceil(peak / tick));
    const y = (v) => h - bottom - (v / vmax) * (h - top - bottom);
    const slot = (w - left - right) / Math.max(1, n);
    ctx.strokeStyle = "#2a323b"; ctx.lineWidth = 1; ctx.textAlign = "right";
    for (let v = 0; v <= vmax + 1e-9; v += tick) {
      ctx.beginPath(); ctx.moveTo(left, y(v)); ctx.lineTo(w - right, y(v)); ctx.stroke();
      ctx.fillText(String(Math.round(v * 100) / 100), left - 5 * dpr, y(v) + 4 * dpr);
    }
    ctx.textAlign = "center";
    const every = Math.ceil(n / Math.max(1, Math.floor((w - left - right) / (48 * dpr))));
    d.buckets.forEach((b, i) => {
      if (i % every) return;
      const label = d.bucket === "day" ? b.label.slice(5) : b.label;
      ctx.fillText(label, left + (i + 0.5) * slot, h - 6 * dpr);
    });
    const bars = series.filter((s) => s[2] === "bar"), width = (slot * 0.8) / bars.length;
    let drawn = 0;
    for (let i = 0; i < n; i++) {
      const x0 = left + i * slot + slot * 0.1;
      bars.forEach(([key, vals], j) => {
        const v = vals[i];
        if (v === null || v <= 0) return;
        ctx.fillStyle = COLOURS[key]; drawn++;
        ctx.fillRect(x0 + j * width, y(v), Math.max(1, width - dpr), h - bottom - y(v));
      });
      for (const [key, vals, style] of series) {
        if (style !== "tick" || vals[i] === null) continue;
        ctx.fillStyle = COLOURS[key]; ctx.fillRect(x0, y(vals[i]) - dpr, slot * 0.8, 2 * dpr);
      }
    }
    c.dataset.buckets = String(n); c.dataset.bars = String(drawn); c.dataset.peak = String(peak);
    c.setAttribute("aria-label", c.dataset.kind + " " + c.dataset.name + ": " + n + " buckets, " +
      drawn + " bars, highest " + peak);
  }

  function bucketChanged() {
    const hourly = el("report-bucket").value === "hour";
    el("report-day").hidden = !hourly; el("report-month").hidden = hourly;
    load();
  }

  el("reports").addEventListener("toggle", load);
  el("report-bucket").addEventListener("change", bucketChanged);
  el("report-day").addEventListener("change", load);
  el("report-month").addEventListener("change", load);
  el("camera").addEventListener("change", load);
  addEventListener("resize", () => { if (shown && el("reports").open) show(shown); });
})();

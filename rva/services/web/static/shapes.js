// Counting lines and zones, edited on the live picture: draw, name, Save; move, delete, undo.
// rva web keeps them in Redis (rva.shapes) and every service applies a change within seconds,
// without a restart. Needs app.js (camera, $, getJSON) loaded first.
"use strict";
const editor = { kind: null, name: null, points: [] };
let shapeState = { lines: {}, zones: {}, can_save: false, why_not: null };

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
  const pts = editor.points.slice(0, editor.kind === "line" ? 2 : undefined);
  ctx.beginPath(); pts.forEach((p, i) => (i ? ctx.lineTo(p[0], p[1]) : ctx.moveTo(p[0], p[1])));
  if (editor.kind === "zone" && editor.done) ctx.closePath();
  ctx.stroke();
  editor.points.forEach((p) => { ctx.beginPath(); ctx.arc(p[0], p[1], 5, 0, 7); ctx.fill(); });
}
function say(text, bad) {
  $("shape-msg").textContent = text; $("shape-msg").classList.toggle("bad", !!bad);
}
function uniqueName(kind) {
  const taken = shapeState[kind + "s"] || {};
  for (let i = 1; ; i++) { const n = (kind === "line" ? "line" : "zone") + i; if (!taken[n]) return n; }
}
function pair(q) { return "[" + q[0] + ", " + q[1] + "]"; }
function classesOf() {
  const c = $("shape-classes").value.split(",").map((x) => x.trim()).filter((x) => x);
  return c.length ? c : ["person"];
}
function specOf() {
  const p = editor.points, classes = classesOf();
  return editor.kind === "line" ? { points: [p[0], p[1]], in_side: p[2], classes } : { polygon: p, classes };
}
function showToml() {
  const p = editor.points, name = $("shape-name").value || "name", classes = classesOf();
  const what = classes.join() === "person" ? "" : "classes = [" + classes.map((c) => JSON.stringify(c)).join(", ") + "]\n";
  $("draw-toml").value = (editor.kind === "line"
    ? "[cameras." + camera + ".lines." + name + "]\npoints = [" + pair(p[0]) + ", " + pair(p[1]) + "]\nin_side = " + pair(p[2]) + "\n"
    : "[cameras." + camera + ".zones." + name + "]\npolygon = [" + p.map(pair).join(", ") + "]\n") + what;
}
function finishSketch() {
  editor.done = true; redrawSketch();
  $("shape-name").value = editor.name || uniqueName(editor.kind);
  $("shape-name").readOnly = !!editor.name; // moving keeps the name (and its totals)
  const was = editor.name && (shapeState[editor.kind + "s"] || {})[editor.name];
  $("shape-classes").value = was ? was.classes.join(",") : "person";
  $("shape-save").disabled = !shapeState.can_save;
  $("draw-out").hidden = false; showToml();
  $("draw-hint").textContent = editor.name ? "Save moves " + editor.kind + " " + editor.name + " (its totals stay)" : "name it, then Save";
  if (!shapeState.can_save) say(shapeState.why_not || "saving is not allowed here", true);
}
function startSketch(kind, name) {
  Object.assign(editor, { kind, name: name || null, points: [], done: false });
  $("draw").hidden = false; $("draw-out").hidden = true; say("");
  $("draw-hint").textContent = kind === "line"
    ? "click the line's two ends, then a point on the side people walk INTO"
    : "click the corners; double-click the last one";
  redrawSketch();
}
function cancelSketch() {
  editor.kind = null; editor.points = []; $("draw").hidden = true; $("draw-out").hidden = true;
  $("draw-hint").textContent = "";
}
function sketchClick(ev) {
  if (!editor.kind || editor.done) return;
  editor.points.push(toFrame(ev)); redrawSketch();
  if (editor.kind === "line" && editor.points.length === 3) finishSketch();
}
function sketchDone(ev) {
  if (editor.kind !== "zone" || editor.done) return;
  ev.preventDefault();
  // A double-click also sent two clicks on the same corner: keep one.
  const p = editor.points;
  while (p.length > 1 && p[p.length - 1][0] === p[p.length - 2][0] && p[p.length - 1][1] === p[p.length - 2][1]) p.pop();
  if (p.length >= 3) finishSketch();
}

async function send(method, url, body) {
  const r = await fetch(url, {
    method, cache: "no-store", signal: AbortSignal.timeout(8000),
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = {};
  try { data = await r.json(); } catch (e) { /* an empty or HTML answer */ }
  if (!r.ok) throw new Error(data.error || (r.status + " " + r.statusText));
  return data;
}
async function saveSketch() {
  const name = $("shape-name").value.trim();
  try {
    const done = await send("POST", "/api/shapes", { camera, kind: editor.kind, name, ...specOf() });
    say(done.action + " — applied within seconds");
    cancelSketch(); refreshShapes();
  } catch (e) { say("not saved: " + e.message, true); }
}
async function removeShape(kind, name) {
  if (!confirm("Remove " + kind + " " + name + "? Its counts so far are kept.")) return;
  try {
    const done = await send("DELETE", "/api/shapes/" + encodeURIComponent(camera) + "/" + kind + "/" + encodeURIComponent(name));
    say(done.action); refreshShapes();
  } catch (e) { say("not removed: " + e.message, true); }
}
async function undoShape() {
  try {
    const done = await send("POST", "/api/shapes/" + encodeURIComponent(camera) + "/undo", {});
    say(done.action); refreshShapes();
  } catch (e) { say("nothing undone: " + e.message, true); }
}

// The list under the video: every line and zone in use, where it comes from, move / delete.
async function refreshShapes() {
  let s;
  try { s = await getJSON("/api/shapes?camera=" + encodeURIComponent(camera)); } catch (e) { return; }
  if (!s.lines) return;
  shapeState = s;
  const items = [...Object.keys(s.lines).map((n) => ["line", n, s.lines[n]]),
                 ...Object.keys(s.zones).map((n) => ["zone", n, s.zones[n]])];
  $("shape-list").replaceChildren(...items.map(([kind, name, shape]) => {
    const li = document.createElement("li"), label = document.createElement("span");
    const what = shape.classes && shape.classes.join() !== "person" ? " [" + shape.classes.join(", ") + "]" : "";
    label.textContent = kind + " " + name + what + (shape.from === "saved" ? "" : " (rva.toml)");
    li.dataset.kind = kind; li.dataset.name = name; li.append(label);
    if (s.can_save) {
      const del = document.createElement("button");
      del.type = "button"; del.textContent = "delete"; del.className = "delete";
      del.onclick = () => removeShape(kind, name);
      // Moving is drawn on the picture: none with [web] video = "off" (rva lines set still can).
      if (videoMode !== "off") {
        const move = document.createElement("button");
        move.type = "button"; move.textContent = "move"; move.className = "move";
        move.onclick = () => startSketch(kind, name);
        li.append(move);
      }
      li.append(del);
    }
    return li;
  }));
  $("shape-undo").hidden = !s.can_save;
  $("shape-list").dataset.version = String(s.version);
  if (!s.can_save && !$("shape-msg").textContent) $("shape-why").textContent = s.why_not || "";
}

$("draw-line").onclick = () => startSketch("line");
$("draw-zone").onclick = () => startSketch("zone");
$("draw").onclick = sketchClick;
$("draw").ondblclick = sketchDone;
$("shape-save").onclick = saveSketch;
$("shape-cancel").onclick = cancelSketch;
$("shape-undo").onclick = undoShape;
$("shape-name").oninput = showToml;
$("shape-classes").oninput = showToml;
setInterval(() => { if (camera !== null) refreshShapes(); }, 3000);

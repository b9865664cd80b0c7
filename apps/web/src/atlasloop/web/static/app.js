// AtlasLoop's page: sign in, take a case, look where attention points, correct, submit; review.
// Slices are pictures drawn by the rendering service (the CT, optionally with one organ's heat) under
// a canvas where this page draws the label: the label version's slice from the server with the
// annotator's edits on top. Edits live here until they are submitted, as RAS voxel -> label
// (atlasloop.web.volumes documents the pixel-to-voxel mapping used below).

const $ = (id) => document.getElementById(id);
const PLANES = ["axial", "coronal", "sagittal"];

const state = {
  me: null,
  organs: [], // {label, name, color}
  lease: null,
  grid: null, // {shape: [X, Y, Z], spacing_mm}
  index: { axial: 0, coronal: 0, sagittal: 0 },
  heading: { axial: 1, coronal: 1, sagittal: 1 }, // the way each plane was last scrolled
  regions: [],
  region: null,
  edits: new Map(), // RAS voxel index -> label
  verdicts: new Map(), // region number -> "fixed" | "not_an_error"
  base: {}, // plane -> {rows, cols, index, data: Uint8Array}
  activeMs: 0,
  visibleSince: null,
  review: null,
  timings: { firstPictureMs: null, sliceMs: [] }, // what the person waited for, measured here
};
window.atlasloop = state; // for the browser test and for people debugging

// ---- calls ----

async function call(method, path, body) {
  const options = { method, headers: { "x-atlasloop": "1" }, credentials: "same-origin" };
  if (body !== undefined) {
    options.headers["content-type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).error; } catch (_) { /* not JSON */ }
    throw new Error(detail);
  }
  return response;
}
const getJson = async (path) => (await call("GET", path)).json();
const say = (text) => { $("message").textContent = text; };

// ---- geometry: a picture's pixel (r, c) of a plane is a RAS voxel ----

function pictureSize(plane) {
  const [X, Y, Z] = state.grid.shape;
  return { axial: [Y, X], coronal: [Z, X], sagittal: [Z, Y] }[plane]; // rows, cols
}

function pixelMm(plane) {
  const [sx, sy, sz] = state.grid.spacing_mm;
  return { axial: [sy, sx], coronal: [sz, sx], sagittal: [sz, sy] }[plane];
}

function voxelOf(plane, index, r, c) {
  const [X, Y, Z] = state.grid.shape;
  let i, j, k;
  if (plane === "axial") { i = X - 1 - c; j = Y - 1 - r; k = index; }
  else if (plane === "coronal") { i = X - 1 - c; j = index; k = Z - 1 - r; }
  else { i = index; j = Y - 1 - c; k = Z - 1 - r; }
  return (i * Y + j) * Z + k;
}

function boxInPicture(plane, lo, hi) {
  const [X, Y, Z] = state.grid.shape;
  const cols = plane === "sagittal" ? [Y - 1 - hi[1], Y - 1 - lo[1]] : [X - 1 - hi[0], X - 1 - lo[0]];
  const rows = plane === "axial" ? [Y - 1 - hi[1], Y - 1 - lo[1]] : [Z - 1 - hi[2], Z - 1 - lo[2]];
  return { r0: rows[0], r1: rows[1], c0: cols[0], c1: cols[1] };
}

// ---- viewports ----

function buildViewports(container, paintable) {
  container.replaceChildren();
  const views = {};
  for (const plane of PLANES) {
    const [rows, cols] = pictureSize(plane);
    const [rowMm, colMm] = pixelMm(plane);
    const wrap = document.createElement("div");
    wrap.className = "viewport";
    const title = document.createElement("div");
    const stage = document.createElement("div");
    stage.className = "stage";
    const img = document.createElement("img");
    img.alt = `${plane} slice`;
    const canvas = document.createElement("canvas");
    canvas.width = cols; canvas.height = rows;
    canvas.dataset.plane = plane;
    if (paintable) canvas.className = "paint";
    stage.append(img, canvas);
    const slider = document.createElement("input");
    slider.type = "range"; slider.min = 0;
    slider.max = state.grid.shape[{ axial: 2, coronal: 1, sagittal: 0 }[plane]] - 1;
    slider.dataset.plane = plane;
    slider.setAttribute("aria-label", `${plane} slice`);
    wrap.append(title, stage, slider);
    container.append(wrap);
    views[plane] = { plane, title, stage, img, canvas, slider, rows, cols, rowMm, colMm };
  }
  return views;
}

function sizeViewports(views) {
  const zoom = Number($("zoom").value);
  for (const v of Object.values(views)) {
    const mmPerPx = Math.max(v.cols * v.colMm, v.rows * v.rowMm) / (260 * zoom);
    v.stage.style.width = `${(v.cols * v.colMm) / mmPerPx}px`;
    v.stage.style.height = `${(v.rows * v.rowMm) / mmPerPx}px`;
  }
}

function colourOf(label) {
  const organ = state.organs.find((o) => o.label === label);
  return organ ? organ.color : [255, 255, 255];
}

function colourTable(show, alpha) {
  // One RGBA entry per label value, packed so that a pixel is one 32-bit write (the bytes are laid
  // out as the canvas wants them whatever the machine's byte order: the table is written as bytes).
  const bytes = new Uint8Array(256 * 4);
  if (show) {
    for (let label = 1; label < 256; label++) bytes.set([...colourOf(label), alpha], 4 * label);
  }
  return new Uint32Array(bytes.buffer);
}
const CHANGED = new Uint32Array(new Uint8Array([255, 255, 0, 230]).buffer)[0];

function pixelOf(plane, index, voxel) {
  // The inverse of voxelOf: the (r, c) of a RAS voxel in this plane's slice, or null when the voxel
  // lies on another slice.
  const [X, Y, Z] = state.grid.shape;
  const k = voxel % Z, j = Math.floor(voxel / Z) % Y, i = Math.floor(voxel / (Y * Z));
  if (plane === "axial") return k === index ? [Y - 1 - j, X - 1 - i] : null;
  if (plane === "coronal") return j === index ? [Z - 1 - k, X - 1 - i] : null;
  return i === index ? [Z - 1 - k, Y - 1 - j] : null;
}

function drawLabels(v, base, opts) {
  // Each pixel: the label (the annotator's edit where there is one) in its organ's colour, edits
  // more opaque; with `compare`, pixels whose label differs from it in yellow. The slice is coloured
  // through a table in one pass and the edits on this slice painted over it: a move through an
  // unedited case costs one table lookup per pixel (a lookup of the edits for every pixel made a
  // move's drawing the page's largest cost).
  const ctx = v.canvas.getContext("2d");
  ctx.clearRect(0, 0, v.cols, v.rows);
  if (!base) return;
  const image = ctx.createImageData(v.cols, v.rows);
  const out = new Uint32Array(image.data.buffer);
  const plain = colourTable(opts.show, 110), edited = colourTable(opts.show, 200);
  const data = base.data, compare = opts.compare ? opts.compare.data : null;
  for (let p = 0; p < out.length; p++) {
    out[p] = compare && compare[p] !== data[p] ? CHANGED : plain[data[p]];
  }
  for (const [voxel, label] of opts.edits || []) {
    const at = pixelOf(v.plane, base.index, voxel);
    if (!at) continue;
    const p = at[0] * v.cols + at[1];
    out[p] = compare && compare[p] !== label ? CHANGED : edited[label];
  }
  ctx.putImageData(image, 0, 0);
  if (opts.box) {
    const b = boxInPicture(v.plane, opts.box.lo, opts.box.hi);
    ctx.strokeStyle = "#58a6ff"; ctx.lineWidth = 1;
    ctx.strokeRect(b.c0 - 0.5, b.r0 - 0.5, b.c1 - b.c0 + 2, b.r1 - b.r0 + 2);
  }
}

const sliceCache = new Map(); // label slices already fetched (label versions never change), bounded
const SLICE_CACHE = 600;

function loadSlice(caseId, version, plane, index, role) {
  const key = `${caseId}/${version}/${plane}/${index}/${role}`;
  if (!sliceCache.has(key)) {
    const q = `plane=${plane}&index=${index}&as=${role}`;
    const pending = call("GET", `/api/cases/${enc(caseId)}/versions/${enc(version)}/labels?${q}`).then(async (response) => ({
      rows: Number(response.headers.get("x-rows")), cols: Number(response.headers.get("x-cols")), index,
      data: new Uint8Array(await response.arrayBuffer()),
    }));
    pending.catch(() => sliceCache.delete(key));
    sliceCache.set(key, pending);
    if (sliceCache.size > SLICE_CACHE) sliceCache.delete(sliceCache.keys().next().value);
  }
  return sliceCache.get(key);
}

const imageCache = new Map(); // decoded pictures of the slices around the ones shown, bounded
function prefetch(url) {
  if (imageCache.has(url)) return;
  const img = new Image();
  img.src = url;
  imageCache.set(url, img);
  if (imageCache.size > SLICE_CACHE) imageCache.delete(imageCache.keys().next().value);
}

function imageUrl(caseId, plane, index, role, heat) {
  const q = new URLSearchParams({ plane, index, as: role, window: $("window").value });
  if (heat) q.set("heat", heat);
  return `/api/cases/${enc(caseId)}/image?${q}`;
}
const enc = encodeURIComponent;

function loaded(img, url) {
  return new Promise((resolve, reject) => {
    img.onload = () => resolve(); img.onerror = () => reject(new Error(`could not load ${url}`));
    img.src = url;
  });
}

// ---- the annotator ----

let annotateViews = null;

async function nextCase() {
  if (state.edits.size && !confirm("Drop the edits of this case?")) return;
  const clicked = performance.now();
  state.timings.clickedAt = clicked;
  const reply = await (await call("POST", "/api/next")).json();
  if (!reply.lease) { say(reply.message); return; }
  await openLease(reply.lease);
  state.timings.firstPictureMs = performance.now() - clicked;
}

async function scrollTo(plane, index) {
  // Move one plane to a slice and resolve with the milliseconds until it is drawn.
  const started = performance.now();
  state.heading[plane] = Math.sign(index - state.index[plane]) || state.heading[plane];
  state.index[plane] = index;
  await showPlane(plane);
  const ms = performance.now() - started;
  state.timings.sliceMs.push(ms);
  return ms;
}
state.scrollTo = scrollTo;

async function openLease(lease) {
  state.lease = lease; state.edits = new Map(); state.verdicts = new Map(); state.region = null; state.base = {};
  closeTags();
  localStorage.setItem("atlasloop.lease", lease.lease_id); // not a credential: the page resumes it after a reload
  const base = `/api/cases/${enc(lease.case_id)}/versions/${enc(lease.label_version)}`;
  // the lease carries the grid (from the case's geometry), so the pictures are asked for at once,
  // beside the regions, while the server is still loading the label
  const regions = getJson(`${base}/regions?as=annotator`);
  state.grid = lease.grid || await getJson(`${base}/grid?as=annotator`);
  state.regions = [];
  const [X, Y, Z] = state.grid.shape;
  state.index = { axial: Math.floor(Z / 2), coronal: Math.floor(Y / 2), sagittal: Math.floor(X / 2) };
  $("case-info").textContent = `case ${lease.case_id} · lease ${lease.lease_id}` + (lease.double_read
    ? " · double read: an independent second reading from the AI label, compared with the first reader's" : "");
  annotateViews = buildViewports($("viewports"), true);
  for (const v of Object.values(annotateViews)) wireViewport(v);
  sizeViewports(annotateViews);
  if (lease.organs.length) $("organ").value = lease.organs[0];
  state.activeMs = 0; state.visibleSince = document.visibilityState === "visible" ? performance.now() : null;
  $("submit").disabled = false;
  $("submit").textContent = lease.double_read ? "Submit reading" : "Check tags and submit";
  const [found] = await Promise.all([regions, ...PLANES.map((p) => showPlane(p, false))]); // the first picture first
  state.regions = found.regions;
  listRegions();
  say(`case ${lease.case_id}: ${state.regions.length} attention regions`);
  document.body.dataset.caseReady = lease.lease_id;
  // axial is the plane read slice by slice; the other two get their neighbours only until they are
  // scrolled, so that the first axial moves do not queue behind ten pictures of planes not in use
  // (make bench, back to back: the fifth move took 320-420 ms behind them)
  PLANES.forEach((p) => prefetchAround(p, p === "axial" ? 4 : 1));
}

function listRegions() {
  const list = $("regions");
  list.replaceChildren();
  state.regions.forEach((region, n) => {
    const item = document.createElement("li");
    const name = document.createElement("span");
    name.textContent = `${region.organ} · ${region.volume_ml.toFixed(1)} mL`;
    name.onclick = () => jumpTo(n);
    item.dataset.region = n;
    item.append(name);
    for (const [verdict, text] of [["fixed", "fixed"], ["not_an_error", "not an error"]]) {
      const button = document.createElement("button");
      button.className = "verdict"; button.textContent = text; button.dataset.verdict = verdict;
      button.setAttribute("aria-pressed", "false");
      button.onclick = () => {
        if (state.verdicts.get(n) === verdict) state.verdicts.delete(n); else state.verdicts.set(n, verdict);
        for (const b of item.querySelectorAll(".verdict")) b.setAttribute("aria-pressed", String(state.verdicts.get(n) === b.dataset.verdict));
      };
      item.append(button);
    }
    list.append(item);
  });
}

async function jumpTo(n) {
  const region = state.regions[n];
  state.region = region;
  const centre = region.lo.map((lo, a) => Math.floor((lo + region.hi[a]) / 2));
  state.index = { sagittal: centre[0], coronal: centre[1], axial: centre[2] };
  $("organ").value = region.organ;
  for (const li of $("regions").children) li.setAttribute("aria-current", String(Number(li.dataset.region) === n));
  await Promise.all(PLANES.map((p) => showPlane(p)));
  document.body.dataset.region = String(n);
}

async function showPlane(plane, ahead = true) {
  const v = annotateViews[plane];
  const index = state.index[plane];
  v.slider.value = index;
  v.title.textContent = `${plane} ${index + 1} / ${Number(v.slider.max) + 1}`;
  const heat = $("show-heat").checked ? $("organ").value : "";
  const lease = state.lease;
  const url = imageUrl(lease.case_id, plane, index, "annotator", heat);
  const [base] = await Promise.all([
    loadSlice(lease.case_id, lease.label_version, plane, index, "annotator"),
    loaded(v.img, url),
  ]);
  if (state.index[plane] !== index) return; // scrolled on meanwhile
  state.base[plane] = base;
  redraw(plane);
  if (ahead) prefetchAround(plane);
}

function prefetchAround(plane, reach = 4) {
  // The slices a person scrolls to next: fetched now, so the move only draws. Four ahead in the
  // way the plane is being scrolled, one behind: scrolling fast, the next slices are already on
  // their way when asked for (make bench, back to back: p50 61 -> 41 ms against two each way).
  const v = annotateViews[plane], lease = state.lease, index = state.index[plane];
  const heat = $("show-heat").checked ? $("organ").value : "";
  const last = Number(v.slider.max), d = state.heading[plane];
  const ahead = Array.from({ length: reach }, (_, n) => index + (n + 1) * d);
  for (const next of [...ahead, index - d]) {
    if (next < 0 || next > last) continue;
    prefetch(imageUrl(lease.case_id, plane, next, "annotator", heat));
    loadSlice(lease.case_id, lease.label_version, plane, next, "annotator");
  }
}

function redraw(plane) {
  const box = state.region && state.region.organ === $("organ").value ? state.region : null;
  drawLabels(annotateViews[plane], state.base[plane], { edits: state.edits, show: $("show-labels").checked, box });
  $("changed").textContent = `${state.edits.size} voxels changed`;
}

function wireViewport(v) {
  v.slider.oninput = () => scrollTo(v.plane, Number(v.slider.value));
  v.stage.onwheel = (e) => {
    e.preventDefault();
    const next = Math.min(Number(v.slider.max), Math.max(0, state.index[v.plane] + Math.sign(e.deltaY)));
    if (next !== state.index[v.plane]) scrollTo(v.plane, next);
  };
  let drawing = false;
  const at = (e) => {
    const rect = v.canvas.getBoundingClientRect();
    return [Math.floor(((e.clientY - rect.top) / rect.height) * v.rows), Math.floor(((e.clientX - rect.left) / rect.width) * v.cols)];
  };
  v.canvas.onmousedown = (e) => {
    const tool = document.querySelector("input[name=tool]:checked").value;
    if (tool === "fill") { fill(v, ...at(e)); return; }
    drawing = true; stroke(v, ...at(e), tool);
  };
  v.canvas.onmousemove = (e) => { if (drawing) stroke(v, ...at(e), document.querySelector("input[name=tool]:checked").value); };
  window.addEventListener("mouseup", () => { drawing = false; });
}

function organLabel() {
  return state.organs.find((o) => o.name === $("organ").value).label;
}

function setVoxel(v, r, c, label) {
  if (!$("tags-panel").hidden) closeTags(); // the suggestions were for the change before this one
  const base = state.base[v.plane];
  const voxel = voxelOf(v.plane, base.index, r, c);
  if (label === base.data[r * v.cols + c]) state.edits.delete(voxel); else state.edits.set(voxel, label);
}

function effective(v, r, c) {
  const base = state.base[v.plane];
  const edited = state.edits.get(voxelOf(v.plane, base.index, r, c));
  return edited !== undefined ? edited : base.data[r * v.cols + c];
}

function stroke(v, r0, c0, tool) {
  if (!state.base[v.plane]) return;
  const radius = Number($("radius").value);
  const label = organLabel();
  for (let r = r0 - radius; r <= r0 + radius; r++) {
    for (let c = c0 - radius; c <= c0 + radius; c++) {
      if (r < 0 || c < 0 || r >= v.rows || c >= v.cols || (r - r0) ** 2 + (c - c0) ** 2 > radius * radius) continue;
      if (tool === "brush") setVoxel(v, r, c, label);
      else if (effective(v, r, c) === label) setVoxel(v, r, c, 0); // the eraser removes only this organ
    }
  }
  redraw(v.plane);
}

function fill(v, r0, c0) {
  // Fill the region enclosed by the organ's contour on this slice; refused when it leaks to the edge.
  const label = organLabel();
  if (!state.base[v.plane] || effective(v, r0, c0) === label) return;
  const seen = new Uint8Array(v.rows * v.cols);
  const stack = [[r0, c0]], inside = [];
  seen[r0 * v.cols + c0] = 1;
  while (stack.length) {
    const [r, c] = stack.pop();
    inside.push([r, c]);
    for (const [dr, dc] of [[1, 0], [-1, 0], [0, 1], [0, -1]]) {
      const rr = r + dr, cc = c + dc;
      if (rr < 0 || cc < 0 || rr >= v.rows || cc >= v.cols) { say("the contour is not closed: fill refused"); return; }
      const p = rr * v.cols + cc;
      if (!seen[p] && effective(v, rr, cc) !== label) { seen[p] = 1; stack.push([rr, cc]); }
    }
  }
  for (const [r, c] of inside) setVoxel(v, r, c, label);
  redraw(v.plane);
}

function measuredSeconds() {
  const running = state.visibleSince === null ? 0 : performance.now() - state.visibleSince;
  return (state.activeMs + running) / 1000;
}
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") state.visibleSince = performance.now();
  else if (state.visibleSince !== null) { state.activeMs += performance.now() - state.visibleSince; state.visibleSince = null; }
});

function editsBody() {
  const voxels = [...state.edits.keys()];
  return { voxels, labels: voxels.map((k) => state.edits.get(k)) };
}

async function checkTags() {
  // The server suggests error tags from the change (the taxonomy tracking applies); the annotator
  // confirms or changes them before anything is stored.
  if (!state.edits.size) { say("nothing changed yet: paint or erase first"); return; }
  $("submit").disabled = true;
  try {
    const reply = await (await call("POST", `/api/leases/${enc(state.lease.lease_id)}/tags`, editsBody())).json();
    $("tag-list").replaceChildren(...reply.organs.map((o) => {
      const set = document.createElement("fieldset");
      const legend = document.createElement("legend");
      legend.textContent = `${o.organ}: +${o.voxels_added} / -${o.voxels_removed} voxels`;
      set.append(legend);
      for (const tag of reply.taxonomy) {
        const label = document.createElement("label"), box = document.createElement("input");
        box.type = "checkbox"; box.value = tag; box.dataset.organ = o.organ; box.checked = o.suggested.includes(tag);
        if (box.checked) label.className = "suggested";
        label.append(box, ` ${tag.replaceAll("_", " ")}`);
        set.append(label);
      }
      return set;
    }));
    $("tags-panel").hidden = false;
    document.body.dataset.tagsReady = String(reply.organs.length);
  } catch (e) { say(e.message); } finally { $("submit").disabled = false; }
}

function closeTags() { $("tags-panel").hidden = true; delete document.body.dataset.tagsReady; }

async function submit() {
  if (!state.edits.size) { say("nothing changed yet: paint or erase first"); return; }
  $("confirm-submit").disabled = true;
  try {
    const { voxels, labels } = editsBody();
    const verdicts = [...state.verdicts.entries()].map(([n, verdict]) => {
      const r = state.regions[n];
      return { organ: r.organ, min_mm: r.min_mm, max_mm: r.max_mm, verdict };
    });
    const tags = [...document.querySelectorAll("#tag-list input:checked")].map((b) => ({ organ: b.dataset.organ, tag: b.value }));
    const reply = await (await call("POST", `/api/leases/${enc(state.lease.lease_id)}/revision`,
      { voxels, labels, verdicts, tags, seconds: measuredSeconds() })).json();
    closeTags();
    say(`revision ${reply.revision_id} stored (${reply.organs.join(", ")}); tags: ${tags.map((t) => `${t.organ}: ${t.tag}`).join(", ") || "none"}`);
    document.body.dataset.submitted = reply.revision_id;
    state.lastSubmitted = { ...reply, voxels, labels };
    state.edits = new Map(); state.lease = null; localStorage.removeItem("atlasloop.lease"); $("submit").disabled = true;
    $("viewports").replaceChildren(); $("regions").replaceChildren(); $("case-info").textContent = "";
  } catch (e) { say(e.message); } finally { $("confirm-submit").disabled = false; }
}

// ---- the reviewer ----

let reviewViews = null;

async function refreshReviews() {
  const { revisions } = await getJson("/api/revisions");
  const list = $("pending");
  list.replaceChildren();
  for (const r of revisions) {
    const item = document.createElement("li");
    item.textContent = `${r.case_id}: ${r.organs.join(", ")} by ${r.annotator}, ${r.minutes} min`;
    item.dataset.revision = r.revision_id;
    item.onclick = () => openReview(r);
    list.append(item);
  }
  if (!revisions.length) say("no revision waits for review");
}

async function openReview(r) {
  state.review = r;
  const base = `/api/cases/${enc(r.case_id)}/versions/${enc(r.parent_version)}`;
  state.grid = await getJson(`${base}/grid?as=reviewer`);
  const changed = await firstChangedSlices(r);
  const before = buildViewports($("review-before"), false), after = buildViewports($("review-after"), false);
  sizeViewports(before); sizeViewports(after);
  reviewViews = { before, after };
  for (const plane of PLANES) {
    const index = changed[plane];
    const [old, now] = await Promise.all([
      loadSlice(r.case_id, r.parent_version, plane, index, "reviewer"),
      loadSlice(r.case_id, r.label_version, plane, index, "reviewer"),
    ]);
    for (const [views, slice, compare] of [[before, old, null], [after, now, old]]) {
      const v = views[plane];
      v.slider.value = index; v.slider.disabled = true;
      v.title.textContent = `${plane} ${index + 1}`;
      await loaded(v.img, imageUrl(r.case_id, plane, index, "reviewer", ""));
      drawLabels(v, slice, { show: true, compare });
    }
  }
  $("review-info").textContent = `revision ${r.revision_id} of case ${r.case_id}`;
  $("approve").disabled = $("reject").disabled = false;
  document.body.dataset.reviewReady = r.revision_id;
}

async function firstChangedSlices(r) {
  // The centre of the changed voxels' box: the reviewer's view opens where the work was done.
  const [X, Y, Z] = state.grid.shape;
  const q = new URLSearchParams({ case_id: r.case_id, from: r.parent_version, to: r.label_version });
  const { centre } = await getJson(`/api/changes?${q}`);
  const [i, j, k] = centre || [Math.floor(X / 2), Math.floor(Y / 2), Math.floor(Z / 2)];
  return { sagittal: i, coronal: j, axial: k };
}

async function decide(approve) {
  const reason = $("reason").value.trim();
  if (!approve && !reason) { say("say why it is rejected"); return; }
  const r = state.review;
  const reply = await (await call("POST", `/api/revisions/${enc(r.revision_id)}/review`, { approve, reason })).json();
  $("approve").disabled = $("reject").disabled = true;
  state.review = null;
  await refreshReviews();
  say(`revision ${r.revision_id}: case ${r.case_id} is ${reply.state}`);
  document.body.dataset.reviewed = r.revision_id;
}

// ---- the coordinator ----

function table(element, header, rows) {
  element.replaceChildren();
  const head = element.insertRow();
  for (const h of header) { const th = document.createElement("th"); th.textContent = h; head.append(th); }
  for (const row of rows) { const tr = element.insertRow(); for (const cell of row) tr.insertCell().textContent = cell; }
}

function plotMinutes(svg, minutes) {
  // One bar per round, the tallest filling the plot: the minutes a round of revisions cost.
  svg.replaceChildren();
  const entries = Object.entries(minutes), top = Math.max(1, ...entries.map(([, m]) => m));
  const ns = "http://www.w3.org/2000/svg", width = 420 / Math.max(1, entries.length);
  entries.forEach(([round, m], n) => {
    const bar = document.createElementNS(ns, "rect"), label = document.createElementNS(ns, "text");
    const h = (m / top) * 110;
    bar.setAttribute("x", n * width + 8); bar.setAttribute("y", 120 - h);
    bar.setAttribute("width", width - 16); bar.setAttribute("height", h); bar.setAttribute("fill", "#2f6feb");
    label.setAttribute("x", n * width + 8); label.setAttribute("y", 136); label.setAttribute("fill", "#e6e6e6");
    label.setAttribute("font-size", "11"); label.textContent = `round ${round}: ${m.toFixed(1)} min`;
    svg.append(bar, label);
  });
}

async function refreshOverview() {
  const o = await getJson("/api/overview");
  const p = o.attention_precision;
  $("precision").textContent = p.judged
    ? `${(100 * p.precision).toFixed(0)}% of ${p.judged} judged regions held an error (${p.fixed} fixed)`
    : "no region verdicts yet";
  table($("states"), ["state", "cases"], Object.entries(o.cases_by_state));
  plotMinutes($("minutes-plot"), o.minutes_per_round);
  table($("organ-table"), ["round", "organ", "cases revised", "mean Dice AI vs revised", "tags", "regions fixed", "not an error",
    "double reads", "Dice between readers"],
    o.organs.map((r) => [r.round, r.organ, r.cases_revised, r.mean_dice.toFixed(3),
      Object.entries(r.tags).map(([t, n]) => `${t} ${n}`).join(", "), r.regions_fixed, r.regions_not_an_error,
      r.double_reads, r.double_read_dice === null ? "-" : r.double_read_dice.toFixed(3)]));
  table($("runs"), ["run", "state", "trigger", "published set", "reason"],
    o.runs.map((r) => [r.run_id, r.state, r.trigger, r.published || "-", r.reason]));
  document.body.dataset.overview = String(p.judged);
}

// ---- sign-in and views ----

function show(view) {
  for (const name of ["signin", "annotate", "review", "coordinate"]) $(`${name}-view`).hidden = name !== view;
  for (const b of document.querySelectorAll("nav button")) b.setAttribute("aria-pressed", String(b.dataset.view === view));
  if (view === "review") refreshReviews().catch((e) => say(e.message));
  if (view === "coordinate") refreshOverview().catch((e) => say(e.message));
}

async function resumeLease() {
  const leaseId = localStorage.getItem("atlasloop.lease");
  if (!leaseId) return;
  try {
    const { lease } = await getJson(`/api/leases/${enc(leaseId)}`);
    if (lease.active) { await openLease(lease); say(`resumed case ${lease.case_id}`); return; }
  } catch (_) { /* another person's, or gone */ }
  localStorage.removeItem("atlasloop.lease");
}

function signedIn(me) {
  state.me = me;
  $("who").textContent = `${me.name} (${me.roles.join(", ")})`;
  $("tabs").hidden = false; $("sign-out").hidden = false;
  $("tab-annotate").hidden = !me.roles.includes("annotator");
  $("tab-review").hidden = !me.roles.includes("reviewer");
  $("tab-coordinate").hidden = !(me.roles.includes("reviewer") || me.roles.includes("admin"));
  show(me.roles.includes("annotator") ? "annotate" : me.roles.includes("reviewer") ? "review" : "coordinate");
  if (me.roles.includes("annotator")) resumeLease();
}

async function start() {
  const [schema, config] = await Promise.all([getJson("/api/schema"), getJson("/api/config")]);
  state.organs = schema.organs;
  $("oidc-sign-in").hidden = !config.oidc; $("signin-form").hidden = !config.token_sign_in;
  $("organ").replaceChildren(...state.organs.map((o) => new Option(o.name, o.name)));
  $("signin-form").onsubmit = async (e) => {
    e.preventDefault();
    try { signedIn(await (await call("POST", "/api/session", { token: $("token").value })).json()); $("token").value = ""; say(""); }
    catch (err) { say(err.message); }
  };
  $("sign-out").onclick = async () => {
    const reply = await (await call("DELETE", "/api/session")).json();
    if (reply.logout_url) location.assign(reply.logout_url); else location.reload(); // the provider's too
  };
  for (const b of document.querySelectorAll("nav button")) b.onclick = () => show(b.dataset.view);
  $("next-case").onclick = () => nextCase().catch((e) => say(e.message));
  // a double read is a second reading to compare with the first, not a correction of the AI's
  // errors: tracking stores no tags for it, so it is submitted without the tags step
  $("submit").onclick = () => (state.lease?.double_read ? submit() : checkTags());
  $("confirm-submit").onclick = submit;
  $("back-to-edit").onclick = closeTags;
  $("refresh-reviews").onclick = () => refreshReviews().catch((e) => say(e.message));
  $("refresh-overview").onclick = () => refreshOverview().catch((e) => say(e.message));
  $("approve").onclick = () => decide(true).catch((e) => say(e.message));
  $("reject").onclick = () => decide(false).catch((e) => say(e.message));
  for (const id of ["show-heat", "window", "organ"]) $(id).onchange = () => state.lease && PLANES.forEach((p) => showPlane(p));
  $("show-labels").onchange = () => state.lease && PLANES.forEach(redraw);
  $("zoom").oninput = () => annotateViews && sizeViewports(annotateViews);
  try { signedIn(await getJson("/api/me")); } catch (_) { show("signin"); }
}

start().catch((e) => say(e.message));

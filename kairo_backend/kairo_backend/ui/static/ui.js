// kairo dashboard: the run page's loss curves, drawn as SVG and fed by server-sent events.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const W = 640, H = 300, LEFT = 56, RIGHT = 16, TOP = 14, BOTTOM = 36;

  function el(name, attrs, text) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  // Redraws the whole chart: a few hundred points at most, cheaper than bookkeeping.
  function draw(svg, points, epochsTotal) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const values = [];
    for (const p of points) {
      if (p.loss !== null) values.push(p.loss);
      if (p.val_loss !== null) values.push(p.val_loss);
    }
    const xMax = Math.max(epochsTotal || 1, points.length ? points[points.length - 1].epoch : 1, 1);
    const yMax = niceMax(values.length ? Math.max(...values) : 1);
    const x = (e) => LEFT + (W - LEFT - RIGHT) * (e / xMax);
    const y = (v) => TOP + (H - TOP - BOTTOM) * (1 - v / yMax);
    for (let i = 0; i <= 4; i++) {
      const v = (yMax * i) / 4;
      svg.appendChild(el("line", { x1: LEFT, x2: W - RIGHT, y1: y(v), y2: y(v), class: "grid" }));
      svg.appendChild(el("text", { x: LEFT - 6, y: y(v) + 4, "text-anchor": "end" }, v.toPrecision(2)));
    }
    svg.appendChild(el("line", { x1: LEFT, x2: LEFT, y1: TOP, y2: H - BOTTOM, class: "axis" }));
    svg.appendChild(el("line", { x1: LEFT, x2: W - RIGHT, y1: H - BOTTOM, y2: H - BOTTOM, class: "axis" }));
    const ticks = Math.min(xMax, 10);
    for (let i = 0; i <= ticks; i++) {
      const e = Math.round((xMax * i) / ticks);
      svg.appendChild(el("text", { x: x(e), y: H - BOTTOM + 16, "text-anchor": "middle" }, String(e)));
    }
    svg.appendChild(el("text", { x: (LEFT + W - RIGHT) / 2, y: H - 4, "text-anchor": "middle" }, "epoch"));
    for (const [key, cls] of [["loss", "loss"], ["val_loss", "val"]]) {
      const coords = points.filter((p) => p[key] !== null).map((p) => `${x(p.epoch).toFixed(1)},${y(p[key]).toFixed(1)}`);
      if (coords.length) {
        svg.appendChild(el("polyline", { points: coords.join(" "), class: cls, "data-series": key }));
      }
    }
    svg.setAttribute("data-points", String(points.length));
    const count = document.getElementById("curve-count");
    if (count) count.textContent = `${points.length} epoch${points.length === 1 ? "" : "s"}`;
  }

  function setText(id, text) {
    const node = document.getElementById(id);
    if (node) node.textContent = text;
  }

  function showState(state) {
    const holder = document.getElementById("run-status");
    if (holder) {
      const badge = document.createElement("span");
      badge.className = `state state-${state.status}`;
      badge.textContent = state.status;
      holder.replaceChildren(badge);
    }
    setText("queue-position", state.position_in_queue ? String(state.position_in_queue) : "not queued");
    let progress = `epoch ${state.epoch} of ${state.epochs_total}`;
    if (state.estimated_remaining_s) progress += `, about ${Math.round(state.estimated_remaining_s)} s left`;
    setText("run-progress", progress);
  }

  function curvePage() {
    const svg = document.getElementById("curve");
    const data = document.getElementById("curve-data");
    if (!svg || !data) return;
    const curve = JSON.parse(data.textContent);
    let points = curve.points;
    draw(svg, points, curve.epochs_total);
    const stream = document.getElementById("curve-stream");
    if (!stream || !window.EventSource) return;
    const source = new EventSource(`${stream.dataset.url}?after=${curve.after}`);
    source.addEventListener("epoch", (ev) => {
      const p = JSON.parse(ev.data);
      if (points.length && p.epoch <= points[points.length - 1].epoch) points = []; // trained again
      points.push(p);
      draw(svg, points, p.epochs_total);
    });
    source.addEventListener("state", (ev) => showState(JSON.parse(ev.data)));
    source.addEventListener("done", () => {
      source.close();
      window.location.reload(); // the finished run's metrics and logs
    });
  }

  document.addEventListener("DOMContentLoaded", curvePage);
})();

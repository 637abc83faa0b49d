// The connectome page. All data comes from the JSON block that the report stage embeds; every
// string from it reaches the DOM as text (textContent, or esc() in tooltip HTML), never as
// markup. Positions are precomputed, so the graph is drawn with layout "none".
'use strict';
(() => {
  const D = JSON.parse(document.getElementById('connectome-data').textContent);
  const N = D.nodes.id.length;
  // Above 1 500 nodes the map is drawn in large mode (see optionLarge). ?render=graph or
  // ?render=large overrides the choice, for measuring and for fast machines.
  const RENDER = new URLSearchParams(location.search).get('render');
  const LARGE = RENDER === 'graph' ? false : RENDER === 'large' ? true : N > 1500;
  const BG = '#0f172a';
  const TEXT = '#e2e8f0';
  const NEUTRAL = '#56B4E9';
  const KINDS = ['closest', 'farthest'];
  const KIND_LABEL = { closest: 'most similar', farthest: 'least similar' };
  const EDGE_COLOR = { closest: '#56B4E9', farthest: '#E69F00' };
  const SEQ = ['#FFF7BC', '#FEE391', '#FEC44F', '#FB9A29', '#EC7014', '#CC4C02', '#993404', '#662506'];
  const VIEWER = 'https://viewer.imaging.datacommons.cancer.gov/v3/viewer/';
  const PLANES = ['Axial', 'Coronal', 'Sagittal'];
  const t0 = performance.now();

  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
  // el builds an element; string children become text nodes, so data never becomes markup.
  const el = (tag, props, ...children) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === 'text') e.textContent = v;
      else if (k === 'class') e.className = v;
      else if (k.startsWith('data-') || k.startsWith('aria-') || k === 'role') e.setAttribute(k, v);
      else e[k] = v;
    }
    for (const c of children) if (c !== null && c !== undefined && c !== false) e.append(c);
    return e;
  };
  const isDataImage = (s) => typeof s === 'string' && s.startsWith('data:image/png;base64,');
  const preview = (i) => { const p = D.nodes.preview && D.nodes.preview[i]; return isDataImage(p) ? p : ''; };
  const pct = (s) => s.toFixed(1) + ' %';
  const announce = (msg) => { $('announce').textContent = msg; };

  const byId = new Map();
  const byPatient = new Map();
  D.nodes.id.forEach((id, i) => byId.set(id, i));
  D.nodes.patient.forEach((p, i) => { if (p && !byPatient.has(p)) byPatient.set(p, i); });
  const facetByKey = new Map(D.facets.map((f) => [f.key, f]));
  const firstFacet = (D.facets.find((f) => f.available) || D.facets[0] || { key: '' }).key;
  const lookup = (s) => (byId.has(s) ? byId.get(s) : byPatient.get(s));

  const state = { model: 0, kind: 'closest', facet: firstFacet, node: -1, compare: -1 };

  // ── views: per model and kind, the adjacency and in-degree, built on first use ──
  const views = new Map();
  function view(mi, kind) {
    const key = mi + '/' + kind;
    if (views.has(key)) return views.get(key);
    const es = D.models[mi] && D.models[mi][kind];
    if (!es) return null;
    const indeg = new Int32Array(N);
    const outAdj = new Array(N);
    const inAdj = new Array(N);
    for (let e = 0; e < es.q.length; e++) {
      indeg[es.m[e]]++;
      (outAdj[es.q[e]] ||= []).push(e);
      (inAdj[es.m[e]] ||= []).push(e);
    }
    let maxIn = 1;
    for (let i = 0; i < N; i++) maxIn = Math.max(maxIn, indeg[i]);
    const v = { es, indeg, maxIn, outAdj, inAdj };
    views.set(key, v);
    return v;
  }
  const hasKind = (mi, kind) => !!(D.models[mi] && D.models[mi][kind]);
  // ranked lists node i's edges of a view, best rank first.
  const ranked = (v, i) => (v.outAdj[i] || []).slice().sort((a, b) => v.es.r[a] - v.es.r[b]);

  function nodeColor(i) {
    const f = facetByKey.get(state.facet);
    if (!f || !f.available) return NEUTRAL;
    return f.categories[f.values[i]].color;
  }
  // facts are a node's known clinical categories, short: cancer type, stage, sex, age band.
  function facts(i) {
    return D.facets.filter((f) => f.available).slice(0, 4)
      .map((f) => f.categories[f.values[i]].name).filter((n) => n !== 'Unknown').join(' · ');
  }

  // ── chart ──
  const chartBox = $('chart');
  const chart = echarts.init(chartBox, null, { renderer: 'canvas' });
  const panelWidth = () => ($('panel').hidden ? 0 : $('panel').offsetWidth);

  function pinNeighbours(v) {
    const pin = state.node;
    if (pin < 0) return null;
    const es = v.es;
    const near = new Set([pin]);
    for (const e of v.outAdj[pin] || []) near.add(es.m[e]);
    for (const e of v.inAdj[pin] || []) near.add(es.q[e]);
    return near;
  }

  const tooltipOption = () => ({
    trigger: 'item', confine: true, formatter: tooltip, className: 'tt',
    backgroundColor: 'rgba(30,41,59,0.96)', borderColor: '#334155', textStyle: { color: TEXT, fontSize: 12 },
  });

  // option draws a small map as an ECharts graph series: per-edge hover, adjacency
  // emphasis and arrows. preserveAspect keeps the layout's proportions, so nodes stay round.
  // Edge labels are not the chart's: drawLabels places them without overlap.
  function option() {
    const v = view(state.model, state.kind);
    if (!v) return { series: [] };
    if (LARGE) return optionLarge(v);
    const es = v.es;
    const lay = es.layout;
    const pin = state.node;
    const near = pinNeighbours(v);
    const hub = 0.6 * v.maxIn;
    const nodes = new Array(N);
    for (let i = 0; i < N; i++) {
      const dim = near && !near.has(i);
      nodes[i] = {
        name: D.nodes.id[i], x: lay[2 * i], y: lay[2 * i + 1], value: v.indeg[i],
        symbolSize: 6 + 24 * Math.sqrt(v.indeg[i] / v.maxIn),
        itemStyle: {
          color: nodeColor(i), opacity: dim ? 0.15 : 1,
          borderColor: i === pin ? '#ffffff' : BG, borderWidth: i === pin ? 2.5 : 0.5,
        },
        label: { show: i === pin || (!near && v.indeg[i] >= hub && v.indeg[i] > 1) },
      };
    }
    const links = new Array(es.q.length);
    for (let e = 0; e < es.q.length; e++) {
      const l = { source: es.q[e], target: es.m[e], value: es.s[e], rank: es.r[e], dist: es.d[e] };
      if (near) l.lineStyle = es.q[e] === pin || es.m[e] === pin ? { opacity: 0.95, width: 2 } : { opacity: 0.03 };
      links[e] = l;
    }
    return {
      backgroundColor: 'transparent', animation: false, tooltip: tooltipOption(),
      series: [{
        id: 'g', type: 'graph', layout: 'none', roam: true, draggable: false, preserveAspect: true,
        left: 20, right: 20 + panelWidth(), top: 20, bottom: 40,
        data: nodes, links,
        edgeSymbol: ['none', 'arrow'], edgeSymbolSize: [0, 5],
        lineStyle: { color: EDGE_COLOR[state.kind], opacity: 0.3, width: 1, curveness: 0 },
        label: { position: 'right', color: TEXT, fontSize: 10, formatter: '{b}' },
        emphasis: { focus: near ? 'none' : 'adjacency', scale: false, lineStyle: { width: 2, opacity: 0.95 } },
        blur: { itemStyle: { opacity: 0.15 }, lineStyle: { opacity: 0.04 } },
        scaleLimit: { min: 0.3, max: 30 },
      }],
    };
  }

  // optionLarge draws a large map the way ECharts draws big data: every edge in one batched
  // path (a large "lines" series fed a Float32Array), nodes as a scatter series, zoom and
  // pan by dataZoom. Building 25 000 graph edges as separate elements took seconds. The
  // batched path has no hover of its own: edgeAt finds the edge under the mouse.
  function optionLarge(v) {
    const es = v.es;
    const lay = es.layout;
    const pin = state.node;
    const near = pinNeighbours(v);
    const pts = new Array(N);
    for (let i = 0; i < N; i++) {
      const dim = near && !near.has(i);
      pts[i] = {
        value: [lay[2 * i], lay[2 * i + 1], v.indeg[i]],
        symbolSize: 3 + 14 * Math.sqrt(v.indeg[i] / v.maxIn),
        itemStyle: {
          color: nodeColor(i), opacity: dim ? 0.15 : 0.95,
          borderColor: '#ffffff', borderWidth: i === pin ? 2.5 : 0,
        },
      };
    }
    const E = es.q.length;
    const flat = new Float32Array(E * 5);
    for (let e = 0, o = 0; e < E; e++, o += 5) {
      const q = es.q[e], m = es.m[e];
      flat[o] = 2;
      flat[o + 1] = lay[2 * q]; flat[o + 2] = lay[2 * q + 1];
      flat[o + 3] = lay[2 * m]; flat[o + 4] = lay[2 * m + 1];
    }
    const hi = [];
    if (pin >= 0) {
      for (const e of [...(v.outAdj[pin] || []), ...(v.inAdj[pin] || [])]) {
        const q = es.q[e], m = es.m[e];
        hi.push({ coords: [[lay[2 * q], lay[2 * q + 1]], [lay[2 * m], lay[2 * m + 1]]], value: es.s[e], rank: es.r[e], dist: es.d[e], q, m });
      }
    }
    const W = chart.getWidth() - panelWidth(), H = chart.getHeight();
    const side = Math.max(100, Math.min(W, H) - 60);
    const axis = { type: 'value', show: false, min: -1040, max: 1040, scale: false };
    return {
      backgroundColor: 'transparent', animation: false, tooltip: tooltipOption(),
      grid: { left: (W - side) / 2, top: (H - side) / 2, width: side, height: side },
      xAxis: axis, yAxis: { ...axis, inverse: true },
      dataZoom: [
        { type: 'inside', xAxisIndex: 0, filterMode: 'none' },
        { type: 'inside', yAxisIndex: 0, filterMode: 'none' },
      ],
      series: [
        {
          id: 'edges', type: 'lines', coordinateSystem: 'cartesian2d', large: true, largeThreshold: 0,
          data: flat, silent: true, clip: true, z: 1,
          lineStyle: { color: EDGE_COLOR[state.kind], opacity: near ? 0.03 : 0.12, width: 0.5 },
        },
        {
          id: 'pinned', type: 'lines', coordinateSystem: 'cartesian2d', data: hi, z: 2, clip: true,
          symbol: ['none', 'arrow'], symbolSize: 6,
          lineStyle: { color: EDGE_COLOR[state.kind], opacity: 0.95, width: 2 },
        },
        {
          id: 'g', type: 'scatter', data: pts, z: 3, clip: true,
          emphasis: { scale: 1.6, itemStyle: { borderColor: '#ffffff', borderWidth: 1.5 } },
        },
      ],
    };
  }

  function facetSummary(i) {
    return D.facets.filter((f) => f.available)
      .map((f) => `<span class="m">${esc(f.label)}:</span> ${esc(f.categories[f.values[i]].name)}`).join('<br>');
  }

  function edgeTooltip(q, m, s, dist, rank) {
    return `<div class="tt"><b>${esc(D.nodes.id[q])}</b> → <b>${esc(D.nodes.id[m])}</b><br>` +
      `${esc(s.toFixed(2))} % similar (cosine distance ${esc(dist)}) · rank ${esc(rank)} of ${esc(D.k)}</div>`;
  }

  function tooltip(p) {
    if (p.dataType === 'edge' || p.seriesId === 'pinned') {
      const d = p.data;
      const [q, m] = p.dataType === 'edge' ? [d.source, d.target] : [d.q, d.m];
      return edgeTooltip(q, m, d.value, d.dist, d.rank);
    }
    if (p.seriesId !== 'g') return '';
    const i = p.dataIndex;
    const indeg = view(state.model, state.kind).indeg[i];
    const pat = D.nodes.patient[i];
    const prev = preview(i);
    return '<div class="tt">' +
      (prev ? `<img src="${esc(prev)}" alt="" width="96" style="float:right;margin-left:8px">` : '') +
      `<b>${esc(D.nodes.id[i])}</b>` + (pat && pat !== D.nodes.id[i] ? `<br><span class="m">patient</span> ${esc(pat)}` : '') +
      `<br><span class="m">match of</span> ${esc(indeg)} <span class="m">others</span><br>` + facetSummary(i) + '</div>';
  }

  // render redraws the current view, keeping the user's zoom and pan.
  function render() {
    const opt = option();
    const old = chart.getOption();
    if (old && old.series && old.series.length) {
      if (LARGE && old.dataZoom && opt.dataZoom) {
        old.dataZoom.forEach((z, k) => { if (opt.dataZoom[k]) Object.assign(opt.dataZoom[k], { start: z.start, end: z.end }); });
      } else if (!LARGE && old.series[0].zoom !== undefined) {
        Object.assign(opt.series[0], { zoom: old.series[0].zoom, center: old.series[0].center });
      }
    }
    chart.setOption(opt, { notMerge: true });
    renderStats();
    scheduleOverlay();
  }

  // pixel is node i's drawn position in chart coordinates.
  function pixel(i) {
    const lay = view(state.model, state.kind).es.layout;
    return chart.convertToPixel({ seriesId: 'g' }, [lay[2 * i], lay[2 * i + 1]]);
  }
  // nodeRadius is node i's drawn radius in pixels (graph nodes grow a little with zoom).
  function nodeRadius(i) {
    const v = view(state.model, state.kind);
    const f = Math.sqrt(v.indeg[i] / v.maxIn);
    if (LARGE) return (3 + 14 * f) / 2;
    const s = chart.getOption().series[0];
    const zoom = (s && s.zoom) || 1;
    return (6 + 24 * f) / 2 * ((zoom - 1) * 0.6 + 1); // ECharts' default nodeScaleRatio 0.6
  }
  function visibleRect() {
    return { x: 0, y: 0, w: chart.getWidth() - panelWidth(), h: chart.getHeight() };
  }

  // ── overlay: edge labels without overlap, the keyboard cursor, the hovered edge ──
  // Drawn on the chart's own canvas (so the PNG export has them) but outside its option, so
  // that moving them never re-runs the chart's pipeline.
  const G = echarts.graphic;
  const overlay = new G.Group({ silent: true });
  chart.getZr().add(overlay);
  const hover = { node: -1, edge: -1 };
  let cursor = -1;
  let placed = []; // the labels drawn: {text, x, y, w, h, e}
  let overlayPending = false;
  function scheduleOverlay() {
    if (overlayPending) return;
    overlayPending = true;
    requestAnimationFrame(() => { overlayPending = false; drawOverlay(); });
  }
  // An explicit line height: the renderer's own guess comes from a glyph that some systems
  // lack, and a box smaller than its text would let labels overlap.
  const labelStyle = (text) => ({
    text, fill: TEXT, fontSize: 11, lineHeight: 14, fontFamily: 'sans-serif', backgroundColor: 'rgba(15,23,42,0.88)',
    padding: [1, 3], borderRadius: 3, align: 'center', verticalAlign: 'middle',
  });

  function drawOverlay() {
    overlay.removeAll();
    const v = view(state.model, state.kind);
    if (!v) return;
    placed = placeLabels(v, hover.node >= 0 ? hover.node : state.node);
    for (const p of placed) overlay.add(new G.Text({ x: p.x, y: p.y, z: 100, style: labelStyle(p.text) }));
    if (hover.edge >= 0) {
      const es = v.es, a = pixel(es.q[hover.edge]), b = pixel(es.m[hover.edge]);
      overlay.add(new G.Line({ z: 99, shape: { x1: a[0], y1: a[1], x2: b[0], y2: b[1] }, style: { stroke: '#ffffff', lineWidth: 2, opacity: 0.9 } }));
    }
    if (cursor >= 0 && document.activeElement === chartBox) {
      const c = pixel(cursor);
      overlay.add(new G.Circle({ z: 101, shape: { cx: c[0], cy: c[1], r: nodeRadius(cursor) + 5 }, style: { fill: null, stroke: '#ffffff', lineWidth: 2, lineDash: [4, 3] } }));
    }
  }

  // labelEdges are node i's edges to label, one per neighbour, its own list first.
  function labelEdges(v, i) {
    const es = v.es;
    const seen = new Set();
    const out = [];
    for (const e of ranked(v, i)) if (!seen.has(es.m[e])) { seen.add(es.m[e]); out.push([e, es.m[e]]); }
    const best = state.kind === 'closest' ? (a, b) => es.s[b] - es.s[a] : (a, b) => es.s[a] - es.s[b];
    for (const e of (v.inAdj[i] || []).slice().sort(best)) if (!seen.has(es.q[e])) { seen.add(es.q[e]); out.push([e, es.q[e]]); }
    return out;
  }

  // placeLabels puts each edge's similarity on the edge, at the first of a few points along
  // it where the label's box overlaps no other label, the node and the chart's border; a
  // label that fits nowhere is left out (the edge's tooltip still has it).
  function placeLabels(v, i) {
    if (i < 0) return [];
    const area = visibleRect();
    const c = pixel(i);
    const r = nodeRadius(i) + 3;
    const boxes = [];
    const labels = [];
    const fits = (b) => b.x >= area.x && b.y >= area.y && b.x + b.w <= area.x + area.w && b.y + b.h <= area.y + area.h &&
      !boxes.some((o) => b.x < o.x + o.w && o.x < b.x + b.w && b.y < o.y + o.h && o.y < b.y + b.h) &&
      !circleHitsBox(c, r, b);
    for (const [e, other] of labelEdges(v, i)) {
      const text = v.es.s[e].toFixed(1) + '%';
      const size = new G.Text({ style: labelStyle(text) }).getBoundingRect();
      const o = pixel(other);
      for (const f of [0.6, 0.75, 0.45, 0.88, 0.32]) {
        const x = c[0] + (o[0] - c[0]) * f, y = c[1] + (o[1] - c[1]) * f;
        const b = { text, e, x, y, w: size.width, h: size.height };
        const box = { x: x - b.w / 2, y: y - b.h / 2, w: b.w, h: b.h };
        if (fits(box)) { boxes.push(box); labels.push(b); break; }
      }
    }
    return labels;
  }
  function circleHitsBox(c, r, b) {
    const dx = c[0] - Math.max(b.x, Math.min(c[0], b.x + b.w));
    const dy = c[1] - Math.max(b.y, Math.min(c[1], b.y + b.h));
    return dx * dx + dy * dy < r * r;
  }

  // edgeAt finds the edge of the current view within a few pixels of (x, y): large mode
  // draws all edges as one path, which has no hover of its own.
  function edgeAt(x, y) {
    const v = view(state.model, state.kind);
    if (!v) return -1;
    const area = visibleRect();
    if (x < area.x || x > area.x + area.w) return -1;
    const es = v.es, lay = es.layout;
    const p0 = chart.convertToPixel({ seriesId: 'g' }, [0, 0]);
    const p1 = chart.convertToPixel({ seriesId: 'g' }, [1000, 1000]);
    const ax = (p1[0] - p0[0]) / 1000, ay = (p1[1] - p0[1]) / 1000;
    const tol = 4;
    let best = -1, bestD = tol * tol;
    for (let e = 0; e < es.q.length; e++) {
      const q = es.q[e], m = es.m[e];
      const x1 = p0[0] + ax * lay[2 * q], y1 = p0[1] + ay * lay[2 * q + 1];
      const x2 = p0[0] + ax * lay[2 * m], y2 = p0[1] + ay * lay[2 * m + 1];
      if (x < Math.min(x1, x2) - tol || x > Math.max(x1, x2) + tol || y < Math.min(y1, y2) - tol || y > Math.max(y1, y2) + tol) continue;
      const dx = x2 - x1, dy = y2 - y1, len = dx * dx + dy * dy;
      const t = len ? Math.max(0, Math.min(1, ((x - x1) * dx + (y - y1) * dy) / len)) : 0;
      const ex = x1 + t * dx - x, ey = y1 + t * dy - y, d = ex * ex + ey * ey;
      if (d < bestD) { bestD = d; best = e; }
    }
    return best;
  }

  const edgeTip = $('edge-tip');
  function showEdgeTip(e, x, y) {
    const es = view(state.model, state.kind).es;
    edgeTip.innerHTML = edgeTooltip(es.q[e], es.m[e], es.s[e], es.d[e], es.r[e]);
    edgeTip.hidden = false;
    const w = edgeTip.offsetWidth, h = edgeTip.offsetHeight, area = visibleRect();
    edgeTip.style.left = Math.min(x + 14, area.w - w - 4) + 'px';
    edgeTip.style.top = Math.max(4, Math.min(y + 14, area.h - h - 4)) + 'px';
  }
  function hideEdge() {
    edgeTip.hidden = true;
    if (hover.edge >= 0) { hover.edge = -1; scheduleOverlay(); }
  }
  let movePending = null;
  chart.getZr().on('mousemove', (ev) => {
    if (!LARGE) return;
    if (ev.target) { hideEdge(); return; } // a node or a pinned edge: the chart's tooltip
    const first = movePending === null;
    movePending = [ev.offsetX, ev.offsetY];
    if (!first) return;
    requestAnimationFrame(() => {
      const [x, y] = movePending;
      movePending = null;
      const e = edgeAt(x, y);
      if (e < 0) { hideEdge(); return; }
      showEdgeTip(e, x, y);
      if (hover.edge !== e) { hover.edge = e; scheduleOverlay(); }
    });
  });
  chart.getZr().on('globalout', hideEdge);

  chart.on('click', (p) => { if (p.seriesId === 'g' && p.dataType !== 'edge') select(p.dataIndex); });
  chart.on('mouseover', (p) => { if (p.seriesId === 'g' && p.dataType !== 'edge' && state.node < 0) { hover.node = p.dataIndex; scheduleOverlay(); } });
  chart.on('mouseout', (p) => { if (p.seriesId === 'g' && hover.node >= 0) { hover.node = -1; scheduleOverlay(); } });
  chart.on('graphroam', scheduleOverlay);
  chart.on('datazoom', scheduleOverlay);
  chart.getZr().on('dblclick', (e) => { if (!e.target) select(-1); });

  // ── keyboard on the map: Tab to it, arrows move between nodes, Enter pins ──
  function hubNode() {
    const v = view(state.model, state.kind);
    let best = 0;
    for (let i = 1; i < N; i++) if (v.indeg[i] > v.indeg[best]) best = i;
    return best;
  }
  function showCursor() {
    if (cursor < 0 || !view(state.model, state.kind)) return;
    const si = chart.getOption().series.findIndex((s) => s.id === 'g');
    chart.dispatchAction({ type: 'showTip', seriesIndex: si, dataIndex: cursor });
    const f = facts(cursor);
    announce(`${D.nodes.id[cursor]}${f ? ', ' + f : ''}. Enter shows its look-alikes.`);
    scheduleOverlay();
  }
  // moveCursor goes to the nearest visible node in the arrow's direction (within 60°).
  function moveCursor(dx, dy) {
    const c = pixel(cursor);
    const area = visibleRect();
    let best = -1, bestScore = Infinity;
    for (let i = 0; i < N; i++) {
      if (i === cursor) continue;
      const p = pixel(i);
      if (p[0] < area.x || p[0] > area.x + area.w || p[1] < area.y || p[1] > area.y + area.h) continue;
      const vx = p[0] - c[0], vy = p[1] - c[1], d = Math.hypot(vx, vy);
      if (d === 0) continue;
      const cos = (vx * dx + vy * dy) / d;
      if (cos < 0.5) continue;
      const score = d * (2 - cos);
      if (score < bestScore) { bestScore = score; best = i; }
    }
    if (best >= 0) { cursor = best; showCursor(); }
  }
  const ARROWS = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
  chartBox.addEventListener('focus', () => {
    if (cursor < 0 || cursor >= N) cursor = state.node >= 0 ? state.node : hubNode();
    showCursor();
  });
  chartBox.addEventListener('blur', () => { chart.dispatchAction({ type: 'hideTip' }); scheduleOverlay(); });
  chartBox.addEventListener('keydown', (e) => {
    if (ARROWS[e.key] && cursor >= 0) {
      e.preventDefault();
      moveCursor(...ARROWS[e.key]);
    } else if ((e.key === 'Enter' || e.key === ' ') && cursor >= 0) {
      e.preventDefault();
      select(cursor);
    }
  });

  // ── controls ──
  const modelSel = $('model');
  D.models.forEach((m, i) => modelSel.append(el('option', { value: String(i), text: m.title ? `${m.name} · ${m.title}` : m.name })));
  modelSel.addEventListener('change', () => { state.model = Number(modelSel.value); refresh(); });

  const kindBtns = KINDS.map((k) => $('kind-' + k));
  kindBtns.forEach((b) => b.addEventListener('click', () => { state.kind = b.dataset.kind; refresh(); }));

  const facetSel = $('facet');
  D.facets.forEach((f) => facetSel.append(el('option', { value: f.key, disabled: !f.available, text: f.available ? f.label : `${f.label} (no data)` })));
  facetSel.addEventListener('change', () => { state.facet = facetSel.value; refresh(); });

  function syncControls() {
    modelSel.value = String(state.model);
    facetSel.value = state.facet;
    for (const b of kindBtns) {
      b.setAttribute('aria-pressed', String(b.dataset.kind === state.kind));
      b.disabled = !hasKind(state.model, b.dataset.kind);
    }
  }

  function refresh() {
    if (!hasKind(state.model, state.kind)) state.kind = KINDS.find((k) => hasKind(state.model, k)) || state.kind;
    syncControls();
    render();
    renderLegend();
    if (state.node >= 0) renderPanel(state.node);
    writeURL();
  }

  function renderStats() {
    const v = view(state.model, state.kind);
    const m = D.models[state.model];
    const edges = v ? v.es.q.length : 0;
    const s = $('stats');
    s.textContent = `${N} nodes · ${edges} edges · ${m ? m.name : '—'} · ${KIND_LABEL[state.kind]}`;
    s.dataset.nodes = String(N);
    s.dataset.edges = String(edges);
  }

  function renderLegend() {
    const box = $('legend');
    const f = facetByKey.get(state.facet);
    if (!f || !f.available) {
      box.replaceChildren(el('div', { class: 'title', text: D.hasClinical ? 'No data for this colour' : 'No clinical data in this run' }));
      return;
    }
    box.replaceChildren(el('div', { class: 'title', text: f.label }), ...f.categories.filter((c) => c.count > 0).map((c) => {
      const sw = el('span', { class: 'swatch' });
      sw.style.background = c.color;
      return el('div', { class: 'item' }, sw, el('span', { text: c.name }), el('span', { class: 'count', text: String(c.count) }));
    }));
  }

  // ── selection, detail panel and gallery ──
  function select(i, from) {
    state.node = i;
    hover.node = -1;
    if (i >= 0) cursor = i;
    $('panel').hidden = i < 0;
    render();
    if (i >= 0) renderPanel(i);
    writeURL();
    if (i >= 0) announce(`Selected ${D.nodes.id[i]}.`);
    if (from === 'gallery') {
      const first = $('gallery') && $('gallery').querySelector('button.pick');
      if (first) first.focus();
    }
  }
  $('panel-close').addEventListener('click', () => { select(-1); chartBox.focus(); });
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && !document.querySelector('dialog[open]') && state.node >= 0) {
      select(-1);
      chartBox.focus();
    }
  });

  function viewerURL(i) {
    const study = D.nodes.study && D.nodes.study[i];
    if (!study) return '';
    const series = [D.nodes.series[i], D.nodes.srSeries[i]].filter(Boolean).map(encodeURIComponent).join(',');
    return VIEWER + '?StudyInstanceUIDs=' + encodeURIComponent(study) + (series ? '&SeriesInstanceUIDs=' + series : '');
  }

  function matchTable(cls, rows) {
    const t = el('table', { class: cls });
    t.append(el('tr', null, el('th', { text: 'rank' }), el('th', { text: 'id' }), el('th', { class: 'pct', text: 'similarity' })));
    for (const [rank, j, s, dist] of rows) {
      const b = el('button', { type: 'button', class: 'link', text: D.nodes.id[j], 'data-node': String(j) });
      b.addEventListener('click', () => select(j));
      t.append(el('tr', { 'data-node': String(j) }, el('td', { text: String(rank) }), el('td', null, b), el('td', { class: 'pct', text: pct(s), title: 'cosine distance ' + dist })));
    }
    return t;
  }

  // crop shows a node's preview: one plane (0 axial, 1 coronal, 2 sagittal; the QC preview
  // has the three side by side) or, without one, a placeholder.
  function crop(i, plane, cls) {
    if (!D.nodes.preview) return null; // a run without previews: no empty frames
    const src = preview(i);
    if (!src) return el('span', { class: cls + ' none', text: 'no image' });
    // In the gallery the card's text names the tumour; the compare view names each plane.
    return el('img', { class: `${cls} plane-${plane}`, src, alt: cls === 'crop' ? '' : `${PLANES[plane]} plane of ${D.nodes.id[i]}` });
  }

  // agreement: which other models also list j among node i's matches of the current kind.
  function agreement(i, j) {
    const out = [];
    D.models.forEach((m, mi) => {
      if (mi === state.model) return;
      const v = view(mi, state.kind);
      if (!v) return;
      out.push([m.name, (v.outAdj[i] || []).some((e) => v.es.m[e] === j)]);
    });
    return out;
  }

  function galleryCard(i, j, e, es) {
    const agree = agreement(i, j);
    const yes = agree.filter((a) => a[1]);
    const dots = el('span', { class: 'dots', 'aria-hidden': 'true' }, ...agree.map(([name, on]) => el('span', { class: on ? 'on' : 'off', title: name })));
    const f = facts(j);
    // The button's name is its visible text (rank, similarity, id, facts, agreement).
    const pick = el('button', { type: 'button', class: 'pick', tabIndex: -1, 'data-node': String(j), title: `Select ${D.nodes.id[j]}` },
    crop(j, 0, 'crop'),
    el('span', { class: 'line' }, el('span', { class: 'rank', text: '#' + es.r[e] }), el('span', { class: 'pct', text: pct(es.s[e]) })),
    el('span', { class: 'cid', text: D.nodes.id[j] }),
    f ? el('span', { class: 'facts', text: f }) : null,
    agree.length ? el('span', { class: 'agree', title: yes.length ? 'Also listed by ' + yes.map((a) => a[0]).join(', ') : 'No other model lists it' },
      dots, el('span', { class: 'n', text: `${yes.length}/${agree.length} models` }), el('span', { class: 'sr-only', text: 'also list it' })) : null);
    pick.addEventListener('click', () => select(j, 'gallery'));
    const cmp = el('button', { type: 'button', class: 'cmp', text: 'Compare', 'aria-label': `Compare ${D.nodes.id[i]} with ${D.nodes.id[j]}` });
    cmp.addEventListener('click', () => openCompare(j));
    return el('li', { class: 'card', 'data-node': String(j) }, pick, cmp);
  }

  // gallery: the selected tumour's crop beside those of its matches, in rank order.
  function gallery(i, v) {
    const es = v.es;
    const self = el('li', { class: 'card self', 'aria-current': 'true' },
      el('div', { class: 'pick' }, crop(i, 0, 'crop'),
        el('span', { class: 'line' }, el('span', { class: 'rank', text: 'selected' })),
        el('span', { class: 'cid', text: D.nodes.id[i] }),
        facts(i) ? el('span', { class: 'facts', text: facts(i) }) : null));
    const list = el('ul', { id: 'gallery', class: 'gallery', 'aria-label': `${D.nodes.id[i]} and its ${KIND_LABEL[state.kind]}` }, self,
      ...ranked(v, i).map((e) => galleryCard(i, es.m[e], e, es)));
    const picks = [...list.querySelectorAll('button.pick')];
    if (picks.length) picks[0].tabIndex = 0;
    // Arrow keys move through the gallery; Tab leaves it (one stop, then the Compare buttons).
    list.addEventListener('keydown', (e) => {
      const k = picks.indexOf(document.activeElement);
      if (k < 0) return;
      const to = { ArrowRight: k + 1, ArrowDown: k + 1, ArrowLeft: k - 1, ArrowUp: k - 1, Home: 0, End: picks.length - 1 }[e.key];
      if (to === undefined) return;
      e.preventDefault();
      const n = (to + picks.length) % picks.length;
      picks[k].tabIndex = -1;
      picks[n].tabIndex = 0;
      picks[n].focus();
    });
    return list;
  }

  function renderPanel(i) {
    const body = $('panel-body');
    const v = view(state.model, state.kind);
    const id = D.nodes.id[i];
    const pat = D.nodes.patient[i];
    const parts = [el('h2', { id: 'panel-title', text: id })];
    if (pat && pat !== id) parts.push(el('div', { class: 'sub', text: 'Patient ' + pat }));
    if (v) {
      const es = v.es;
      const n = (v.outAdj[i] || []).length;
      parts.push(el('h3', { text: `Its ${n} ${KIND_LABEL[state.kind]} (${D.models[state.model].name})` }), gallery(i, v));
    }
    const form = el('form', { id: 'compare-form', class: 'inline' },
      el('label', { htmlFor: 'compare-with', text: 'Compare with' }),
      el('input', { id: 'compare-with', type: 'search', autocomplete: 'off', placeholder: 'id' }),
      el('button', { type: 'submit', text: 'Compare' }));
    form.querySelector('input').setAttribute('list', 'search-ids');
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const j = lookup($('compare-with').value.trim());
      if (j === undefined) { $('compare-with').setCustomValidity('not found'); $('compare-with').reportValidity(); return; }
      openCompare(j);
    });
    form.querySelector('input').addEventListener('input', (e) => e.target.setCustomValidity(''));
    parts.push(form);
    const url = viewerURL(i);
    if (url) parts.push(el('a', { class: 'viewer', id: 'viewer-link', href: url, target: '_blank', rel: 'noopener noreferrer', text: 'Open CT and annotation in the IDC viewer ↗' }));
    if (D.fields && D.fields.length) {
      const t = el('table', { id: 'clinical' });
      for (const f of D.fields) t.append(el('tr', null, el('th', { text: f.label }), el('td', { text: f.values[i] || '—' })));
      parts.push(el('h3', { text: 'Clinical' }), t);
    } else {
      parts.push(el('p', { class: 'muted', text: 'No clinical data in this run.' }));
    }
    if (v) {
      const es = v.es;
      const inc = (v.inAdj[i] || []).map((e) => [es.r[e], es.q[e], es.s[e], es.d[e]]).sort((a, b) => a[0] - b[0] || b[2] - a[2]);
      parts.push(el('h3', { text: `In the ${KIND_LABEL[state.kind]} lists of ${inc.length} others` }));
      parts.push(inc.length ? matchTable('in-matches', inc) : el('p', { class: 'muted', text: 'None.' }));
    }
    body.replaceChildren(...parts);
    $('panel').hidden = false;
  }

  // ── compare: two tumours side by side ──
  // similarityOf says what the page knows of a and b's similarity under model mi: the exact
  // value when one is in the other's lists, else the bounds the lists give (b is not among
  // a's k most similar, so it is less similar than a's k-th, and so on).
  function similarityOf(mi, a, b) {
    const r = { value: null, how: [], below: Infinity, above: -Infinity };
    for (const kind of KINDS) {
      const v = view(mi, kind);
      if (!v) continue;
      for (const [x, y] of [[a, b], [b, a]]) {
        const list = v.outAdj[x] || [];
        const hit = list.find((e) => v.es.m[e] === y);
        if (hit !== undefined) {
          r.value = v.es.s[hit];
          r.how.push(`${D.nodes.id[y]} is ${D.nodes.id[x]}'s #${v.es.r[hit]} ${KIND_LABEL[kind]}`);
        } else if (list.length >= D.k) {
          const ss = list.map((e) => v.es.s[e]);
          if (kind === 'closest') r.below = Math.min(r.below, Math.min(...ss));
          else r.above = Math.max(r.above, Math.max(...ss));
        }
      }
    }
    return r;
  }
  function similarityText(r) {
    if (r.value !== null) return pct(r.value);
    if (r.below < Infinity && r.above > -Infinity) return `${r.above.toFixed(1)}–${r.below.toFixed(1)} %`;
    if (r.below < Infinity) return `< ${pct(r.below)}`;
    if (r.above > -Infinity) return `> ${pct(r.above)}`;
    return 'not known';
  }

  function compareColumn(i) {
    const planes = D.nodes.preview ? el('div', { class: 'planes' }, ...PLANES.map((name, k) => el('figure', null, crop(i, k, 'plane'), el('figcaption', { text: name })))) : null;
    const pat = D.nodes.patient[i];
    return el('section', { class: 'cmp-col', 'aria-label': D.nodes.id[i] },
      el('h3', { text: D.nodes.id[i] }), pat && pat !== D.nodes.id[i] ? el('div', { class: 'sub', text: 'Patient ' + pat }) : null, planes);
  }

  function renderCompare(a, b) {
    const parts = [el('div', { class: 'cmp-cols' }, compareColumn(a), compareColumn(b))];
    if (D.fields && D.fields.length) {
      const t = el('table', { class: 'cmp-clinical' }, el('tr', null, el('td'), el('th', { text: D.nodes.id[a] }), el('th', { text: D.nodes.id[b] })));
      for (const f of D.fields) {
        const same = f.values[a] && f.values[a] === f.values[b];
        t.append(el('tr', { class: same ? 'same' : '' }, el('th', { text: f.label }), el('td', { text: f.values[a] || '—' }), el('td', { text: f.values[b] || '—' })));
      }
      parts.push(el('h3', { text: 'Clinical' }), t);
    }
    const t = el('table', { id: 'cmp-models' }, el('tr', null, el('th', { text: 'Model' }), el('th', { class: 'pct', text: 'Similarity' }), el('th', { text: 'From the lists' })));
    D.models.forEach((m, mi) => {
      const r = similarityOf(mi, a, b);
      t.append(el('tr', { class: mi === state.model ? 'active' : '', 'data-model': m.name },
        el('th', { text: m.name }), el('td', { class: 'pct', text: similarityText(r) }),
        el('td', { text: r.how.length ? r.how.join('; ') : `neither is in the other's ${D.k} most or least similar` })));
    });
    parts.push(el('h3', { text: 'Similarity under every model' }), t);
    $('compare-title').textContent = `${D.nodes.id[a]} and ${D.nodes.id[b]}`;
    $('compare-body').replaceChildren(...parts);
  }

  function openCompare(j) {
    if (state.node < 0 || j === undefined || j < 0) return;
    state.compare = j;
    renderCompare(state.node, j);
    writeURL();
    const d = $('compare-dialog');
    if (!d.open) d.showModal();
  }
  $('compare-dialog').addEventListener('close', () => { state.compare = -1; writeURL(); });
  $('compare-swap').addEventListener('click', () => {
    const b = state.compare;
    if (b < 0) return;
    const a = state.node;
    select(b);
    openCompare(a);
  });
  $('compare-show').addEventListener('click', () => {
    const b = state.compare;
    $('compare-dialog').close();
    if (b >= 0) select(b);
  });

  // ── search ──
  const dl = $('search-ids');
  const seen = new Set();
  for (let i = 0; i < N; i++) {
    for (const s of [D.nodes.id[i], D.nodes.patient[i]]) {
      if (s && !seen.has(s)) { seen.add(s); dl.append(el('option', { value: s })); }
    }
  }
  function find(q) {
    if (byId.has(q)) return [byId.get(q)];
    if (byPatient.has(q)) return [byPatient.get(q)];
    const lq = q.toLowerCase();
    const hits = [];
    for (let i = 0; i < N && hits.length < 50; i++) {
      if (D.nodes.id[i].toLowerCase().includes(lq) || (D.nodes.patient[i] || '').toLowerCase().includes(lq)) hits.push(i);
    }
    return hits;
  }
  $('search-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const q = $('search').value.trim();
    const msg = $('search-msg');
    if (!q) return;
    const hits = find(q);
    if (hits.length !== 1) {
      msg.textContent = hits.length ? `${hits.length}${hits.length === 50 ? '+' : ''} matches` : 'not found';
      return;
    }
    msg.textContent = '';
    select(hits[0]);
    const lay = view(state.model, state.kind).es.layout;
    const x = lay[2 * hits[0]], y = lay[2 * hits[0] + 1];
    if (LARGE) {
      chart.dispatchAction({ type: 'dataZoom', dataZoomIndex: 0, startValue: x - 250, endValue: x + 250 });
      chart.dispatchAction({ type: 'dataZoom', dataZoomIndex: 1, startValue: y - 250, endValue: y + 250 });
    } else {
      chart.setOption({ series: [{ id: 'g', center: [x, y], zoom: 2.5 }] });
    }
    scheduleOverlay();
  });

  // ── URL parameters: model, kind, facet, node, compare ──
  function readURL() {
    let p = new URLSearchParams(location.search);
    if (![...p.keys()].length && location.hash.length > 1) p = new URLSearchParams(location.hash.slice(1));
    const mi = D.models.findIndex((m) => m.name === p.get('model'));
    if (mi >= 0) state.model = mi;
    if (KINDS.includes(p.get('kind'))) state.kind = p.get('kind');
    const f = facetByKey.get(p.get('facet'));
    if (f && f.available) state.facet = f.key;
    for (const [key, name] of [['node', 'node'], ['compare', 'compare']]) {
      const v = p.get(name);
      const i = v === null ? undefined : lookup(v);
      if (i !== undefined) state[key] = i;
    }
    if (state.node < 0) state.compare = -1;
  }
  function writeURL() {
    const p = new URLSearchParams();
    if (RENDER) p.set('render', RENDER);
    if (D.models[state.model]) p.set('model', D.models[state.model].name);
    p.set('kind', state.kind);
    if (state.facet) p.set('facet', state.facet);
    if (state.node >= 0) p.set('node', D.nodes.id[state.node]);
    if (state.node >= 0 && state.compare >= 0) p.set('compare', D.nodes.id[state.compare]);
    const q = '?' + p.toString();
    if (location.search === q) return;
    try {
      history.replaceState(null, '', q + location.hash);
    } catch (err) {
      // Some browsers refuse to change a file: URL's query; the fragment works everywhere.
      location.replace('#' + p.toString());
    }
  }

  // ── save picture: the current view as SVG, and as PNG drawn from that SVG ──
  // The picture is the chart's option drawn again by ECharts' SVG renderer (server-side mode,
  // no DOM), with the same zoom and pan, the edge labels placed on screen and the legend.
  function pictureOption() {
    const opt = option();
    const cur = chart.getOption();
    if (LARGE && cur.dataZoom) {
      opt.dataZoom.forEach((z, k) => Object.assign(z, { start: cur.dataZoom[k].start, end: cur.dataZoom[k].end }));
    } else if (!LARGE && cur.series[0]) {
      Object.assign(opt.series[0], { zoom: cur.series[0].zoom, center: cur.series[0].center });
    }
    delete opt.tooltip;
    opt.backgroundColor = BG;
    opt.graphic = placed.map((p) => ({ type: 'text', x: p.x, y: p.y, z: 100, style: labelStyle(p.text) }));
    const f = facetByKey.get(state.facet);
    if (f && f.available) {
      const cats = f.categories.filter((c) => c.count > 0);
      const y0 = chart.getHeight() - 14 - 16 * (cats.length + 1);
      opt.graphic.push({ type: 'text', x: 16, y: y0, z: 100, style: { text: f.label, fill: '#94a3b8', fontSize: 12, fontFamily: 'sans-serif' } });
      cats.forEach((c, k) => {
        const y = y0 + 16 * (k + 1);
        opt.graphic.push({ type: 'circle', z: 100, shape: { cx: 21, cy: y + 7, r: 5 }, style: { fill: c.color } });
        opt.graphic.push({ type: 'text', x: 32, y, z: 100, style: { text: `${c.name} (${c.count})`, fill: TEXT, fontSize: 12, fontFamily: 'sans-serif' } });
      });
    }
    return opt;
  }
  function pictureSVG() {
    const c = echarts.init(null, null, { renderer: 'svg', ssr: true, width: chart.getWidth(), height: chart.getHeight() });
    try {
      c.setOption(pictureOption());
      return c.renderToSVGString();
    } finally {
      c.dispose();
    }
  }
  async function picturePNG(svg) {
    const img = new Image();
    img.src = 'data:image/svg+xml;charset=utf-8,' + encodeURIComponent(svg);
    await img.decode();
    const ratio = window.devicePixelRatio || 1;
    const canvas = el('canvas', { width: Math.round(chart.getWidth() * ratio), height: Math.round(chart.getHeight() * ratio) });
    canvas.getContext('2d').drawImage(img, 0, 0, canvas.width, canvas.height);
    return canvas.toDataURL('image/png');
  }
  function pictureName(ext) {
    const m = D.models[state.model];
    const parts = ['connectome', m ? m.name : '', state.kind, state.node >= 0 ? D.nodes.id[state.node] : ''];
    return parts.filter(Boolean).join('-').replace(/[^A-Za-z0-9._-]+/g, '_') + '.' + ext;
  }
  function download(name, href) {
    const a = el('a', { href, download: name, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
  }
  async function savePicture(kind) {
    const status = $('save-msg');
    status.textContent = 'Drawing…';
    try {
      const svg = pictureSVG();
      const name = pictureName(kind);
      if (kind === 'svg') download(name, 'data:image/svg+xml;charset=utf-8,' + encodeURIComponent(svg));
      else download(name, await picturePNG(svg));
      status.textContent = `Saved ${kind.toUpperCase()}`;
      status.title = name;
    } catch (err) {
      status.textContent = 'Could not draw the picture: ' + err.message;
    }
  }
  $('save-png').addEventListener('click', () => savePicture('png'));
  $('save-svg').addEventListener('click', () => savePicture('svg'));

  // ── dialogs ──
  function copyText(text, btn, area) {
    const done = () => { btn.textContent = 'Copied'; setTimeout(() => { btn.textContent = 'Copy'; }, 1500); };
    const fallback = () => { area.select(); if (document.execCommand('copy')) done(); };
    if (navigator.clipboard && navigator.clipboard.writeText) navigator.clipboard.writeText(text).then(done, fallback);
    else fallback();
  }
  const safeHref = (u) => (/^https?:\/\//i.test(u || '') ? u : '');
  $('model-info-btn').addEventListener('click', () => {
    const t = el('table');
    t.append(el('tr', null, ...['Model', 'Description', 'Reference', 'Citation'].map((h) => el('th', { text: h }))));
    D.models.forEach((m, i) => {
      const ref = el('td');
      if (safeHref(m.reference)) ref.append(el('a', { href: m.reference, target: '_blank', rel: 'noopener noreferrer', text: m.reference }));
      else if (m.reference) ref.append(m.reference);
      if (m.license) ref.append(el('div', { class: 'muted', text: 'Licence: ' + m.license }));
      const cite = el('td');
      if (m.citation) {
        const area = el('textarea', { class: 'cite', readOnly: true, rows: 3, value: m.citation, 'aria-label': `Citation of ${m.name}` });
        const btn = el('button', { type: 'button', class: 'copy', text: 'Copy', 'aria-label': `Copy the citation of ${m.name}` });
        btn.addEventListener('click', () => copyText(m.citation, btn, area));
        cite.append(area, btn);
      } else cite.append(el('span', { class: 'muted', text: '—' }));
      t.append(el('tr', { class: i === state.model ? 'active' : '' },
        el('td', null, el('strong', { text: m.name }), m.title ? el('div', { class: 'muted', text: m.title }) : null),
        el('td', { text: m.description || '' }), ref, cite));
    });
    $('model-table').replaceChildren(t);
    $('model-dialog').showModal();
  });

  function renderAgreement() {
    const a = D.agreement;
    const box = $('agreement-table');
    const ksel = $('agreement-k');
    if (!a) {
      box.replaceChildren(el('p', { class: 'muted', text: 'Agreement needs at least two models.' }));
      $('agreement-k-label').hidden = true;
      return;
    }
    const ki = Math.max(0, Number(ksel.value) || 0);
    const vals = a.values[ki];
    // Colour relative to the largest agreement between two different models, so that the
    // off-diagonal cells (the interesting ones, often well below 1) use the whole scale.
    let top = 0;
    vals.forEach((row, i) => row.forEach((v, j) => { if (i !== j && typeof v === 'number') top = Math.max(top, v); }));
    top = top || 1;
    const t = el('table');
    t.append(el('tr', null, el('td'), ...a.models.map((m) => el('th', { text: m }))));
    a.models.forEach((ma, i) => {
      const row = el('tr', null, el('th', { text: ma }));
      a.models.forEach((mb, j) => {
        const v = vals[i][j];
        const td = el('td', { class: 'cell', text: v === null || v === undefined ? '—' : v.toFixed(2), title: `${ma} × ${mb}` });
        if (typeof v === 'number') {
          const c = Math.min(SEQ.length - 1, Math.max(0, Math.round(Math.min(1, v / top) * (SEQ.length - 1))));
          td.style.background = SEQ[c];
          td.style.color = c < 4 ? '#111827' : '#f8fafc';
        }
        row.append(td);
      });
      t.append(row);
    });
    box.replaceChildren(t);
    $('agreement-source').textContent = (a.source === 'edges'
      ? 'Computed from the closest lists in this page.' : 'From similarity/agreement.arrow.') +
      ' Colours run from 0 to the highest agreement between two different models (' + top.toFixed(2) + ').';
  }
  if (D.agreement) {
    D.agreement.k.forEach((k, i) => $('agreement-k').append(el('option', { value: String(i), text: String(k) })));
  }
  $('agreement-k').addEventListener('change', renderAgreement);
  $('agreement-btn').addEventListener('click', () => { renderAgreement(); $('agreement-dialog').showModal(); });
  $('about-btn').addEventListener('click', () => $('about-dialog').showModal());
  for (const d of document.querySelectorAll('dialog')) {
    d.addEventListener('click', (e) => { if (e.target === d) d.close(); }); // click on the backdrop
  }

  $('about-counts').textContent = `This map: ${N} tumours of ${byPatient.size} patients, ${D.models.length} model` +
    `${D.models.length === 1 ? '' : 's'}, ${D.k} matches per tumour and kind.`;
  $('footer').textContent = [
    D.pipelineVersion ? 'connectome ' + D.pipelineVersion : 'connectome',
    D.idcVersion ? 'IDC ' + D.idcVersion : '',
    'ECharts ' + echarts.version, 'works offline',
  ].filter(Boolean).join(' · ');

  // ── start ──
  readURL();
  const hook = { chart, state, data: D, large: LARGE, timings: {}, ready: false };
  // Test and debugging hook: the current view's edges as drawn, a node's pixel position, the
  // edge labels on screen.
  const drawnSeries = (id) => chart.getOption().series.find((s) => s.id === id);
  hook.edges = () => {
    if (LARGE) {
      // The batched path holds coordinates only; check its size, then list the view's edges.
      const es = view(state.model, state.kind).es;
      const flat = drawnSeries('edges').data;
      if (flat.length !== 5 * es.q.length) return [];
      return Array.from(es.q, (q, e) => [D.nodes.id[q], D.nodes.id[es.m[e]], es.r[e], es.s[e]]);
    }
    const s = drawnSeries('g');
    return (s && s.links ? s.links : []).map((l) => [D.nodes.id[l.source], D.nodes.id[l.target], l.rank, l.value]);
  };
  hook.nodeCount = () => drawnSeries('g').data.length;
  hook.nodePixel = (i) => pixel(i);
  hook.nodeRadius = (i) => nodeRadius(i);
  hook.labels = () => overlay.children().filter((c) => c.type === 'text').map((c) => {
    const r = c.getBoundingRect().clone();
    r.applyTransform(c.getComputedTransform());
    return { text: c.style.text, x: r.x, y: r.y, w: r.width, h: r.height };
  });
  hook.cursor = () => cursor;
  hook.labelEdges = () => { const v = view(state.model, state.kind); return v && state.node >= 0 ? labelEdges(v, state.node).length : 0; };
  hook.overlaySettled = () => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
  window.__connectome = hook;
  chart.on('finished', () => {
    if (!hook.ready) {
      hook.ready = true;
      hook.timings.firstRender = performance.now();
      hook.timings.script = performance.now() - t0;
      document.documentElement.dataset.ready = '1';
    }
  });
  window.addEventListener('resize', () => { chart.resize(); render(); });
  if (state.node >= 0) $('panel').hidden = false;
  refresh();
  if (state.node >= 0 && state.compare >= 0) openCompare(state.compare);
})();

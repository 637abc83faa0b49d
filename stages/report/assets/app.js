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
  const NEUTRAL = '#56B4E9';
  const KINDS = ['closest', 'farthest'];
  const KIND_LABEL = { closest: 'most similar', farthest: 'least similar' };
  const EDGE_COLOR = { closest: '#56B4E9', farthest: '#E69F00' };
  const SEQ = ['#FFF7BC', '#FEE391', '#FEC44F', '#FB9A29', '#EC7014', '#CC4C02', '#993404', '#662506'];
  const VIEWER = 'https://viewer.imaging.datacommons.cancer.gov/v3/viewer/';
  const t0 = performance.now();

  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
  // el builds an element; string children become text nodes, so data never becomes markup.
  const el = (tag, props, ...children) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === 'text') e.textContent = v;
      else if (k === 'class') e.className = v;
      else if (k.startsWith('data-') || k.startsWith('aria-')) e.setAttribute(k, v);
      else e[k] = v;
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  };
  const isDataImage = (s) => typeof s === 'string' && s.startsWith('data:image/png;base64,');

  const byId = new Map();
  const byPatient = new Map();
  D.nodes.id.forEach((id, i) => byId.set(id, i));
  D.nodes.patient.forEach((p, i) => { if (p && !byPatient.has(p)) byPatient.set(p, i); });
  const facetByKey = new Map(D.facets.map((f) => [f.key, f]));
  const firstFacet = (D.facets.find((f) => f.available) || D.facets[0] || { key: '' }).key;

  const state = { model: 0, kind: 'closest', facet: firstFacet, node: -1 };

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

  function nodeColor(i) {
    const f = facetByKey.get(state.facet);
    if (!f || !f.available) return NEUTRAL;
    return f.categories[f.values[i]].color;
  }

  // ── chart ──
  const chart = echarts.init($('chart'), null, { renderer: 'canvas' });

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
    backgroundColor: 'rgba(30,41,59,0.96)', borderColor: '#334155', textStyle: { color: '#e2e8f0', fontSize: 12 },
  });
  const edgeLabel = (p) => p.value.toFixed(1) + '%';

  // option draws a small map as an ECharts graph series: per-edge hover, adjacency
  // emphasis and arrows.
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
          borderColor: i === pin ? '#ffffff' : '#0f172a', borderWidth: i === pin ? 2.5 : 0.5,
        },
        label: { show: i === pin || (!near && v.indeg[i] >= hub && v.indeg[i] > 1) },
      };
    }
    const links = new Array(es.q.length);
    for (let e = 0; e < es.q.length; e++) {
      const l = { source: es.q[e], target: es.m[e], value: es.s[e], rank: es.r[e], dist: es.d[e] };
      if (near) {
        const touches = es.q[e] === pin || es.m[e] === pin;
        l.lineStyle = touches ? { opacity: 0.95, width: 2 } : { opacity: 0.03 };
        if (touches) l.label = { show: true };
      }
      links[e] = l;
    }
    return {
      backgroundColor: 'transparent', animation: false, tooltip: tooltipOption(),
      series: [{
        id: 'g', type: 'graph', layout: 'none', roam: true, draggable: false,
        left: 20, right: pin >= 0 ? 380 : 20, top: 20, bottom: 40,
        data: nodes, links,
        edgeSymbol: ['none', 'arrow'], edgeSymbolSize: [0, 5],
        lineStyle: { color: EDGE_COLOR[state.kind], opacity: 0.3, width: 1, curveness: 0 },
        label: { position: 'right', color: '#e2e8f0', fontSize: 10, formatter: '{b}' },
        edgeLabel: { show: false, formatter: edgeLabel, color: '#e2e8f0', fontSize: 10 },
        emphasis: {
          focus: near ? 'none' : 'adjacency', scale: false,
          lineStyle: { width: 2, opacity: 0.95 }, edgeLabel: { show: true },
        },
        blur: { itemStyle: { opacity: 0.15 }, lineStyle: { opacity: 0.04 } },
        scaleLimit: { min: 0.3, max: 30 },
      }],
    };
  }

  // optionLarge draws a large map the way ECharts draws big data: every edge in one batched
  // path (a large "lines" series fed a Float32Array), nodes as a scatter series, zoom and
  // pan by dataZoom. Building 25 000 graph edges as separate elements took seconds.
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
    const W = chart.getWidth() - (pin >= 0 ? 360 : 0), H = chart.getHeight();
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
          label: { show: true, position: 'middle', formatter: edgeLabel, color: '#e2e8f0', fontSize: 10 },
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

  function tooltip(p) {
    if (p.dataType === 'edge' || p.seriesId === 'pinned') {
      const d = p.data;
      const [q, m] = p.dataType === 'edge' ? [d.source, d.target] : [d.q, d.m];
      return `<div class="tt"><b>${esc(D.nodes.id[q])}</b> → <b>${esc(D.nodes.id[m])}</b><br>` +
        `${esc(d.value.toFixed(2))} % similar (cosine distance ${esc(d.dist)}) · rank ${esc(d.rank)} of ${esc(D.k)}</div>`;
    }
    if (p.seriesId !== 'g') return '';
    const i = p.dataIndex;
    const indeg = view(state.model, state.kind).indeg[i];
    const pat = D.nodes.patient[i];
    const prev = D.nodes.preview && D.nodes.preview[i];
    return '<div class="tt">' +
      (isDataImage(prev) ? `<img src="${esc(prev)}" alt="" width="64" style="float:right;margin-left:8px">` : '') +
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
  }

  chart.on('click', (p) => { if (p.seriesId === 'g' && p.dataType !== 'edge') select(p.dataIndex); });
  chart.getZr().on('dblclick', (e) => { if (!e.target) select(-1); });

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

  // ── selection and detail panel ──
  function select(i) {
    state.node = i;
    $('panel').hidden = i < 0;
    render();
    if (i >= 0) renderPanel(i);
    writeURL();
  }
  $('panel-close').addEventListener('click', () => select(-1));
  document.addEventListener('keydown', (e) => { if (e.key === 'Escape' && !document.querySelector('dialog[open]')) select(-1); });

  function viewerURL(i) {
    const study = D.nodes.study && D.nodes.study[i];
    if (!study) return '';
    const series = [D.nodes.series[i], D.nodes.srSeries[i]].filter(Boolean).map(encodeURIComponent).join(',');
    return VIEWER + '?StudyInstanceUIDs=' + encodeURIComponent(study) + (series ? '&SeriesInstanceUIDs=' + series : '');
  }

  function matchTable(cls, rows) {
    const t = el('table', { class: cls });
    t.append(el('tr', null, el('th', { text: 'rank' }), el('th', { text: 'id' }), el('th', { class: 'pct', text: 'similarity' })));
    for (const [rank, j, pct, dist] of rows) {
      const b = el('button', { type: 'button', class: 'link', text: D.nodes.id[j], 'data-node': String(j) });
      b.addEventListener('click', () => select(j));
      t.append(el('tr', { 'data-node': String(j) }, el('td', { text: String(rank) }), el('td', null, b), el('td', { class: 'pct', text: pct.toFixed(1) + ' %', title: 'cosine distance ' + dist })));
    }
    return t;
  }

  function renderPanel(i) {
    const body = $('panel-body');
    const v = view(state.model, state.kind);
    const id = D.nodes.id[i];
    const pat = D.nodes.patient[i];
    const parts = [el('h2', { id: 'panel-title', text: id })];
    if (pat && pat !== id) parts.push(el('div', { class: 'sub', text: 'Patient ' + pat }));
    const prev = D.nodes.preview && D.nodes.preview[i];
    if (isDataImage(prev)) parts.push(el('img', { class: 'preview', src: prev, alt: 'Tumour preview (QC image)' }));
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
      const model = D.models[state.model].name;
      const out = (v.outAdj[i] || []).map((e) => [es.r[e], es.m[e], es.s[e], es.d[e]]).sort((a, b) => a[0] - b[0]);
      const inc = (v.inAdj[i] || []).map((e) => [es.r[e], es.q[e], es.s[e], es.d[e]]).sort((a, b) => a[0] - b[0] || b[2] - a[2]);
      parts.push(el('h3', { text: `Its ${out.length} ${KIND_LABEL[state.kind]} (${model})` }), matchTable('out-matches', out));
      parts.push(el('h3', { text: `In the ${KIND_LABEL[state.kind]} lists of ${inc.length} others` }));
      parts.push(inc.length ? matchTable('in-matches', inc) : el('p', { class: 'muted', text: 'None.' }));
    }
    body.replaceChildren(...parts);
    $('panel').hidden = false;
  }

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
  });

  // ── URL parameters: model, kind, facet, node ──
  function readURL() {
    let p = new URLSearchParams(location.search);
    if (![...p.keys()].length && location.hash.length > 1) p = new URLSearchParams(location.hash.slice(1));
    const mi = D.models.findIndex((m) => m.name === p.get('model'));
    if (mi >= 0) state.model = mi;
    if (KINDS.includes(p.get('kind'))) state.kind = p.get('kind');
    const f = facetByKey.get(p.get('facet'));
    if (f && f.available) state.facet = f.key;
    const node = p.get('node');
    if (node !== null) {
      const i = byId.has(node) ? byId.get(node) : byPatient.get(node);
      if (i !== undefined) state.node = i;
    }
  }
  function writeURL() {
    const p = new URLSearchParams();
    if (D.models[state.model]) p.set('model', D.models[state.model].name);
    p.set('kind', state.kind);
    if (state.facet) p.set('facet', state.facet);
    if (state.node >= 0) p.set('node', D.nodes.id[state.node]);
    const q = '?' + p.toString();
    if (location.search === q) return;
    try {
      history.replaceState(null, '', q + location.hash);
    } catch (err) {
      // Some browsers refuse to change a file: URL's query; the fragment works everywhere.
      location.replace('#' + p.toString());
    }
  }

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
        const area = el('textarea', { class: 'cite', readOnly: true, rows: 3, value: m.citation });
        const btn = el('button', { type: 'button', class: 'copy', text: 'Copy' });
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
    t.append(el('tr', null, el('th'), ...a.models.map((m) => el('th', { text: m }))));
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
  const hook = { chart, state, data: D, timings: {}, ready: false };
  // Test and debugging hook: the current view's edges as drawn, and a node's pixel position.
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
  hook.nodePixel = (i) => {
    const lay = view(state.model, state.kind).es.layout;
    return chart.convertToPixel({ seriesId: 'g' }, [lay[2 * i], lay[2 * i + 1]]);
  };
  window.__connectome = hook;
  chart.on('finished', () => {
    if (!hook.ready) {
      hook.ready = true;
      hook.timings.firstRender = performance.now();
      hook.timings.script = performance.now() - t0;
      document.documentElement.dataset.ready = '1';
    }
  });
  window.addEventListener('resize', () => { chart.resize(); if (LARGE) render(); });
  if (state.node >= 0) $('panel').hidden = false;
  refresh();
})();

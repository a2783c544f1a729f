// The operators' live dashboard (served at /admin/dashboard). Plain ES2020, no build step; charts
// by uPlot (vendored in ./vendor, served as /admin/static/uPlot.iife.min.js, global `uPlot`).
//
// The admin token is typed into #login, kept in sessionStorage (this tab only) and sent as
// `Authorization: Bearer <token>` on every request; never in a URL. A 401 forgets it and shows
// the form again with a message.
//
// Every second (one refresh in flight at a time; backing off on errors): GET /admin/v1/campaigns,
// GET /admin/v1/campaigns/{id}/stats for each (at most MAX_STATS), GET /admin/v1/hot. Rates are
// computed here from the rise of the counters between two refreshes.
//
// Ids for automation: body[data-ticks] counts completed refreshes; each campaign is a row
// tr[data-campaign="<id>"] whose cells carry data-field (stock_total, sold, remaining, reserved,
// orders_queued, orders_persisted, orders_paid, orders_expired, units_returned, rejected_total,
// requests_per_s,
// state) and, per refusal code, span[data-code="<code>"][data-value]; charts are
// [data-chart-campaign="<id>"] holding two uPlot charts (.uplot canvas).
(() => {
  'use strict';

  const TOKEN_KEY = 'seckill.admin.token';
  const PERIOD_MS = 1000;
  const HIDDEN_PERIOD_MS = 5000;
  const BACKOFF_MAX_MS = 30000;
  const FETCH_TIMEOUT_MS = 5000;
  const MAX_STATS = 40; // campaigns whose stats are polled each second
  const MAX_CHARTS = 24; // campaigns with charts
  const HISTORY = 180; // points kept per chart (3 minutes at 1/s)
  const PARALLEL = 4; // stats requests at once within a refresh

  const UNIT_SERIES = [
    ['stock_total', 'stock', '#7f8c8d'],
    ['sold', 'sold', '#2e86de'],
    ['reserved', 'reserved', '#8e44ad'],
    ['orders_queued', 'queued', '#e67e22'],
    ['orders_persisted', 'persisted', '#27ae60'],
    ['orders_paid', 'paid', '#16a085'],
    ['orders_expired', 'expired', '#c0392b'],
    ['units_returned', 'returned', '#6d4c41'],
  ];
  const RATE_COLORS = ['#c0392b', '#d35400', '#f39c12', '#8e44ad', '#2c3e50', '#7f8c8d', '#e84393', '#6c5ce7', '#00838f'];
  const FIELDS = ['stock_total', 'sold', 'remaining', 'reserved', 'orders_queued', 'orders_persisted',
    'orders_paid', 'orders_expired', 'units_returned', 'rejected_total', 'requests_per_s'];

  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs, text) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  };

  let timer = null;
  let running = false;
  let failures = 0;
  let ticks = 0;
  // Per campaign: the previous sample (for rates) and the chart history.
  const series = new Map();

  // ---- token and sign-in ------------------------------------------------------------------------
  const storedToken = () => {
    try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch (_) { return ''; }
  };
  const storeToken = (t) => {
    try {
      if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY);
    } catch (_) { /* storage off: the token lives in memory for this page only */ }
    memoryToken = t;
  };
  let memoryToken = storedToken();

  function message(kind, text) {
    const m = $('message');
    m.dataset.kind = kind || '';
    m.textContent = text || '';
    m.hidden = !text;
  }

  function status(state, text) {
    const s = $('status');
    s.dataset.state = state;
    s.textContent = text;
  }

  function showLogin(why) {
    stop();
    $('dashboard').hidden = true;
    $('sign-out').hidden = true;
    $('login').hidden = false;
    status('signed-out', 'Signed out');
    if (why) message('error', why);
    $('token').value = '';
    $('token').focus();
  }

  function showDashboard() {
    $('login').hidden = true;
    $('dashboard').hidden = false;
    $('sign-out').hidden = false;
    start();
  }

  class Unauthorized extends Error {}
  class HttpError extends Error {
    constructor(status, code, retryAfterMs) {
      super('HTTP ' + status + (code ? ' ' + code : ''));
      this.retryAfterMs = retryAfterMs;
    }
  }

  async function api(path) {
    const ctl = new AbortController();
    const t = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
    let resp;
    try {
      resp = await fetch(path, {
        headers: { Authorization: 'Bearer ' + memoryToken, Accept: 'application/json' },
        cache: 'no-store',
        credentials: 'omit',
        signal: ctl.signal,
      });
    } catch (e) {
      throw new Error(e && e.name === 'AbortError' ? 'no answer within ' + FETCH_TIMEOUT_MS / 1000 + ' s' : 'network error');
    } finally {
      clearTimeout(t);
    }
    if (resp.status === 401) throw new Unauthorized();
    if (!resp.ok) {
      let code = '';
      try { code = (await resp.json()).code || ''; } catch (_) { /* not JSON */ }
      const ra = Number(resp.headers.get('Retry-After'));
      throw new HttpError(resp.status, code, ra > 0 ? ra * 1000 : 0);
    }
    return resp.json();
  }

  // ---- polling ------------------------------------------------------------------------------------
  function start() {
    if (running) return;
    running = true;
    failures = 0;
    status('loading', 'Loading…');
    schedule(0);
  }

  function stop() {
    running = false;
    if (timer) clearTimeout(timer);
    timer = null;
  }

  function schedule(ms) {
    if (!running) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(tick, ms);
  }

  async function tick() {
    timer = null;
    if (!running) return;
    const began = performance.now();
    try {
      const campaigns = await api('/admin/v1/campaigns');
      const list = Array.isArray(campaigns) ? campaigns.slice() : [];
      // Active campaigns first, then by id, so the polled ones are the ones that matter.
      const rank = (c) => (c.state === 'ended' ? 1 : 0);
      list.sort((a, b) => rank(a) - rank(b) || String(a.id).localeCompare(String(b.id)));
      const polled = list.slice(0, MAX_STATS);
      const stats = new Map();
      let next = 0;
      const worker = async () => {
        while (next < polled.length) {
          const c = polled[next++];
          stats.set(c.id, await api('/admin/v1/campaigns/' + encodeURIComponent(c.id) + '/stats'));
        }
      };
      await Promise.all(Array.from({ length: Math.min(PARALLEL, polled.length) }, worker));
      const hot = await api('/admin/v1/hot');
      if (!running) return;
      const now = Date.now();
      render(list, polled, stats, hot, now);
      failures = 0;
      ticks++;
      document.body.dataset.ticks = String(ticks);
      document.body.dataset.updatedAt = String(now);
      message('', '');
      status('live', 'Live: updated ' + new Date(now).toLocaleTimeString());
      const period = document.hidden ? HIDDEN_PERIOD_MS : PERIOD_MS;
      schedule(Math.max(0, period - (performance.now() - began)));
    } catch (e) {
      if (e instanceof Unauthorized) {
        storeToken('');
        showLogin('The admin token was refused (401 unauthorized). Enter a valid token.');
        return;
      }
      if (!running) return;
      failures++;
      const backoff = Math.min(BACKOFF_MAX_MS, PERIOD_MS * 2 ** Math.min(failures, 5));
      const wait = Math.max(backoff, (e && e.retryAfterMs) || 0);
      status('error', 'Not updating');
      message('warn', 'Refresh failed (' + ((e && e.message) || e) + '); retrying in ' + Math.round(wait / 1000) + ' s. The numbers shown may be stale.');
      schedule(wait);
    }
  }

  // ---- rendering ----------------------------------------------------------------------------------
  const fmt = (v) => (v === null || v === undefined ? '–' : String(v));

  function cell(row, field, value, numeric) {
    let td = row.querySelector('[data-field="' + field + '"]');
    if (!td) {
      td = el('td', { 'data-field': field });
      if (numeric) td.className = 'num';
      row.appendChild(td);
    }
    const text = fmt(value);
    if (td.textContent !== text) td.textContent = text;
    return td;
  }

  function render(list, polled, stats, hot, now) {
    const hotIds = new Map((hot.items || []).map((h) => [h.campaign_id, h.requests_per_s]));
    const tbody = $('campaigns').tBodies[0];
    const seen = new Set();
    for (const c of list) {
      seen.add(c.id);
      let row = tbody.querySelector('tr[data-campaign="' + CSS.escape(c.id) + '"]');
      if (!row) {
        row = el('tr', { 'data-campaign': c.id });
        const th = el('th', { scope: 'row' });
        th.appendChild(el('span', { class: 'id' }, c.id));
        th.appendChild(el('span', { class: 'title' }, c.title || ''));
        row.appendChild(th);
      }
      tbody.appendChild(row); // keeps the sorted order
      const s = stats.get(c.id);
      row.dataset.hot = hotIds.has(c.id) ? 'true' : 'false';
      cell(row, 'state', c.state + (hotIds.has(c.id) ? ' · hot' : ''), false).dataset.state = c.state;
      const rejected = (s && s.rejected) || {};
      const rejectedTotal = s ? Object.values(rejected).reduce((a, n) => a + Number(n || 0), 0) : null;
      const values = s ? { ...s, rejected_total: rejectedTotal } : { stock_total: c.stock_total };
      for (const f of FIELDS) {
        if (f === 'requests_per_s') continue;
        cell(row, f, values[f], true);
        if (f === 'rejected_total') renderCodes(row, s ? rejected : null);
      }
      cell(row, 'requests_per_s', s ? s.requests_per_s : null, true);
      if (s) record(c, s, now);
    }
    for (const row of Array.from(tbody.rows)) {
      if (!seen.has(row.dataset.campaign)) row.remove();
    }
    const note = $('campaigns-note');
    note.hidden = list.length <= MAX_STATS;
    note.textContent = list.length > MAX_STATS
      ? 'Live numbers for the first ' + MAX_STATS + ' of ' + list.length + ' campaigns (active first).' : '';
    renderHot(hot);
    renderCharts(polled.slice(0, MAX_CHARTS));
  }

  function renderCodes(row, rejected) {
    let td = row.querySelector('[data-field="rejected"]');
    if (!td) {
      td = el('td', { 'data-field': 'rejected', class: 'codes' });
      row.appendChild(td);
    }
    td.textContent = '';
    if (!rejected) { td.textContent = '–'; return; }
    const codes = Object.keys(rejected).sort();
    if (!codes.length) { td.textContent = 'none'; return; }
    for (const code of codes) {
      td.appendChild(el('span', { 'data-code': code, 'data-value': String(rejected[code]) }, code + ' ' + rejected[code]));
    }
  }

  function renderHot(hot) {
    const ul = $('hot');
    ul.textContent = '';
    $('hot-window').textContent = 'Campaigns this gateway finds hot over the last ' +
      ((hot.window_ms || 0) / 1000) + ' s (GET /admin/v1/hot).';
    const items = hot.items || [];
    if (!items.length) {
      ul.appendChild(el('li', { class: 'none' }, 'No hot item.'));
      return;
    }
    for (const h of items) {
      ul.appendChild(el('li', { 'data-hot-campaign': h.campaign_id }, h.campaign_id + ': ' + h.requests_per_s + ' requests/s'));
    }
  }

  // ---- history and charts -------------------------------------------------------------------------
  function record(c, s, now) {
    let h = series.get(c.id);
    if (!h) {
      h = { t: [], units: UNIT_SERIES.map(() => []), accepted: [], requests: [], codes: new Map(), prev: null, charts: null, codeKey: '' };
      series.set(c.id, h);
    }
    const t = now / 1000;
    h.t.push(t);
    UNIT_SERIES.forEach(([f], i) => h.units[i].push(s[f] === null || s[f] === undefined ? null : Number(s[f])));
    const rejected = s.rejected || {};
    for (const code of Object.keys(rejected)) {
      if (!h.codes.has(code)) h.codes.set(code, h.t.slice(0, -1).map(() => null));
    }
    const p = h.prev;
    const dt = p ? t - p.t : 0;
    const rate = (now1, before) => (p && dt > 0 ? Math.round((Math.max(0, now1 - before) / dt) * 10) / 10 : null);
    h.accepted.push(rate(Number(s.sold || 0), p ? p.sold : 0));
    for (const [code, arr] of h.codes) {
      arr.push(rate(Number(rejected[code] || 0), p ? Number(p.rejected[code] || 0) : 0));
    }
    h.requests.push(typeof s.requests_per_s === 'number' ? s.requests_per_s : null);
    h.prev = { t, sold: Number(s.sold || 0), rejected: { ...rejected } };
    if (h.t.length > HISTORY) {
      const cut = h.t.length - HISTORY;
      h.t.splice(0, cut);
      h.units.forEach((a) => a.splice(0, cut));
      h.accepted.splice(0, cut);
      h.requests.splice(0, cut);
      for (const arr of h.codes.values()) arr.splice(0, cut);
    }
  }

  function chartWidth(box) {
    return Math.max(260, Math.floor(box.clientWidth || 400));
  }

  function baseOpts(title, width) {
    return {
      title,
      width,
      height: 200,
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, y: { range: (u, min, max) => [Math.min(0, min || 0), Math.max(1, (max || 0) * 1.1)] } },
      axes: [{ stroke: '#888', grid: { stroke: 'rgba(128,128,128,0.15)' } },
        { stroke: '#888', grid: { stroke: 'rgba(128,128,128,0.15)' }, size: 56 }],
      legend: { live: true },
    };
  }

  function unitsChart(box, h) {
    const opts = baseOpts('Units', chartWidth(box));
    opts.series = [{}].concat(UNIT_SERIES.map(([, label, color]) => ({ label, stroke: color, width: 2 })));
    return new uPlot(opts, [h.t].concat(h.units), box);
  }

  function ratesChart(box, h) {
    const opts = baseOpts('Grabs per second by outcome', chartWidth(box));
    const codes = Array.from(h.codes.keys());
    opts.series = [{},
      { label: 'accepted', stroke: '#27ae60', width: 2 },
      ...codes.map((code, i) => ({ label: code, stroke: RATE_COLORS[i % RATE_COLORS.length], width: 2 })),
      { label: 'requests (hot window)', stroke: '#2e86de', width: 1, dash: [4, 4] }];
    const data = [h.t, h.accepted, ...codes.map((c) => h.codes.get(c)), h.requests];
    return new uPlot(opts, data, box);
  }

  // Without the pointer over a chart its legend shows the latest values.
  function showLatest(u, n) {
    if (n > 0 && !(u.cursor.left >= 0)) u.setLegend({ idx: n - 1 });
  }

  function renderCharts(campaigns) {
    const root = $('charts');
    if (typeof uPlot !== 'function') {
      if (!root.querySelector('.missing')) root.appendChild(el('p', { class: 'missing' }, 'The chart library did not load.'));
      return;
    }
    const wanted = new Set(campaigns.map((c) => c.id));
    for (const card of Array.from(root.children)) {
      if (!wanted.has(card.dataset.chartCampaign)) {
        const h = series.get(card.dataset.chartCampaign);
        if (h && h.charts) { h.charts.units.destroy(); h.charts.rates.destroy(); h.charts = null; }
        card.remove();
      }
    }
    for (const c of campaigns) {
      const h = series.get(c.id);
      if (!h) continue;
      let card = root.querySelector('[data-chart-campaign="' + CSS.escape(c.id) + '"]');
      if (!card) {
        card = el('article', { class: 'card', 'data-chart-campaign': c.id });
        card.appendChild(el('h3', {}, c.id + (c.title ? ': ' + c.title : '')));
        card.appendChild(el('div', { class: 'chart', 'data-chart': 'units' }));
        card.appendChild(el('div', { class: 'chart', 'data-chart': 'rates' }));
        root.appendChild(card);
      }
      const unitsBox = card.querySelector('[data-chart="units"]');
      const ratesBox = card.querySelector('[data-chart="rates"]');
      const codeKey = Array.from(h.codes.keys()).join(',');
      if (!h.charts) {
        h.charts = { units: unitsChart(unitsBox, h), rates: ratesChart(ratesBox, h) };
        h.codeKey = codeKey;
      } else {
        h.charts.units.setData([h.t].concat(h.units));
        if (codeKey !== h.codeKey) {
          // A new refusal code: a chart with one more series.
          h.charts.rates.destroy();
          h.charts.rates = ratesChart(ratesBox, h);
          h.codeKey = codeKey;
        } else {
          h.charts.rates.setData([h.t, h.accepted, ...Array.from(h.codes.values()), h.requests]);
        }
      }
      showLatest(h.charts.units, h.t.length);
      showLatest(h.charts.rates, h.t.length);
    }
  }

  let resizeTimer = null;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      for (const card of document.querySelectorAll('[data-chart-campaign]')) {
        const h = series.get(card.dataset.chartCampaign);
        if (!h || !h.charts) continue;
        const w = chartWidth(card.querySelector('[data-chart="units"]'));
        h.charts.units.setSize({ width: w, height: 200 });
        h.charts.rates.setSize({ width: w, height: 200 });
      }
    }, 150);
  });

  document.addEventListener('visibilitychange', () => {
    // Back in view: refresh now rather than at the end of the slow hidden period.
    if (!document.hidden && running && failures === 0) schedule(0);
  });

  // ---- wiring -------------------------------------------------------------------------------------
  $('login').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = $('token').value.trim();
    if (!t) return;
    storeToken(t);
    $('token').value = '';
    message('', '');
    showDashboard();
  });
  $('sign-out').addEventListener('click', () => {
    storeToken('');
    message('info', 'Signed out: the token was removed from this tab.');
    showLogin('');
  });

  if (memoryToken) showDashboard(); else showLogin('');
})();

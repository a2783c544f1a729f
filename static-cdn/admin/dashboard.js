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
//
// Waiting rooms (campaigns whose stats carry `waiting_room`): one card each in #rooms,
// [data-room-campaign="<id>"], whose numbers carry data-room-field (queued, waiting, pre_queued,
// admitted, admitted_per_s, active, capacity, abandoned, eta_samples, eta_within_30pct,
// eta_mean_abs_error_pct, admit_per_s) with the raw number in data-value, flags
// span[data-room-flag="blocked"|"queue_sold_out"|"stale"], two uPlot charts ([data-chart="room-rate"]:
// admitted/s against the configured rate; [data-chart="room-people"]: waiting, active, capacity) and
// form[data-room-form] (input[name="admit_per_s"]) that sends POST /admin/v1/campaigns/{id}/waiting-room;
// its outcome shows in [data-room-result] (data-kind ok, warn or error).
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
  const ADMIT_PER_S_MAX = 100000; // the server's range for admit_per_s (README "The waiting room")
  const ROOM_STALE_MS = 5000; // a room whose as_of_ms has not moved for this long (local time) is flagged

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
    constructor(status, code, retryAfterMs, serverMessage) {
      super('HTTP ' + status + (code ? ' ' + code : ''));
      this.status = status;
      this.retryAfterMs = retryAfterMs;
      this.serverMessage = serverMessage || '';
    }
  }

  // GET by default; `body` (an object) is sent as JSON with `method` (POST).
  async function api(path, init) {
    const opts = init || {};
    const ctl = new AbortController();
    const t = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
    const headers = { Authorization: 'Bearer ' + memoryToken, Accept: 'application/json' };
    if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
    let resp;
    try {
      resp = await fetch(path, {
        method: opts.method || 'GET',
        headers,
        body: opts.body !== undefined ? JSON.stringify(opts.body) : undefined,
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
      let code = '', msg = '';
      try {
        const b = await resp.json();
        code = (b && b.code) || '';
        msg = b && typeof b.message === 'string' ? b.message : '';
      } catch (_) { /* not JSON */ }
      const ra = Number(resp.headers.get('Retry-After'));
      throw new HttpError(resp.status, code, ra > 0 ? ra * 1000 : 0, msg);
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
    renderRooms(polled, stats, now);
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

  // ---- waiting rooms ------------------------------------------------------------------------------
  // Per campaign with a room: its history (its own time axis: a room may appear after the campaign)
  // and its charts; kept while the campaign is polled.
  const rooms = new Map();
  let roomSeq = 0; // unique ids for the form's label

  function recordRoom(id, w, now) {
    let r = rooms.get(id);
    if (!r) {
      r = { t: [], rate: [], target: [], waiting: [], active: [], capacity: [], charts: null, asOf: null, asOfSeenAt: now };
      rooms.set(id, r);
    }
    const n = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
    r.t.push(now / 1000);
    r.rate.push(n(w.admitted_per_s));
    r.target.push(n(w.settings && w.settings.admit_per_s));
    r.waiting.push(n(w.waiting));
    r.active.push(n(w.active));
    r.capacity.push(n(w.capacity));
    // Staleness by this browser's clock only (the server's may differ): when did as_of_ms last move?
    if (n(w.as_of_ms) !== r.asOf) { r.asOf = n(w.as_of_ms); r.asOfSeenAt = now; }
    if (r.t.length > HISTORY) {
      const cut = r.t.length - HISTORY;
      for (const k of ['t', 'rate', 'target', 'waiting', 'active', 'capacity']) r[k].splice(0, cut);
    }
    return r;
  }

  function roomRateChart(box, r) {
    const opts = baseOpts('Admissions per second', chartWidth(box));
    opts.series = [{}, { label: 'admitted/s', stroke: '#27ae60', width: 2 },
      { label: 'rate set (admit_per_s)', stroke: '#7f8c8d', width: 1, dash: [4, 4] }];
    return new uPlot(opts, [r.t, r.rate, r.target], box);
  }

  function roomPeopleChart(box, r) {
    const opts = baseOpts('Buyers in the room', chartWidth(box));
    opts.series = [{}, { label: 'waiting', stroke: '#e67e22', width: 2 },
      { label: 'active', stroke: '#2e86de', width: 2 },
      { label: 'capacity', stroke: '#8e44ad', width: 1, dash: [4, 4] }];
    return new uPlot(opts, [r.t, r.waiting, r.active, r.capacity], box);
  }

  function destroyRoomCharts(r) {
    if (r && r.charts) { r.charts.rate.destroy(); r.charts.people.destroy(); r.charts = null; }
  }

  // One number of a card: the text shown and the raw value in data-value.
  function roomField(card, field, value, text) {
    const dd = card.querySelector('[data-room-field="' + field + '"]');
    if (!dd) return;
    const shown = value === null || value === undefined ? '–' : text !== undefined ? text : String(value);
    if (dd.textContent !== shown) dd.textContent = shown;
    dd.dataset.value = value === null || value === undefined ? '' : String(value);
  }

  function roomCard(c) {
    const card = el('article', { class: 'card room', 'data-room-campaign': c.id });
    card.appendChild(el('h3', {}, c.id + (c.title ? ': ' + c.title : '')));
    card.appendChild(el('p', { class: 'flags' }));
    const dl = el('dl');
    const rows = [
      ['queued', 'Queued'], ['waiting', 'Waiting'], ['pre_queued', 'Pre-queued'], ['admitted', 'Admitted'],
      ['admitted_per_s', 'Admitted/s'], ['admit_per_s', 'Rate set (admit_per_s)'], ['active', 'Active'],
      ['capacity', 'Capacity'], ['abandoned', 'Abandoned'], ['eta_within_30pct', 'Estimates within ±30 %'],
      ['eta_samples', 'Estimates scored'], ['eta_mean_abs_error_pct', 'Mean abs. error of estimates'],
    ];
    for (const [field, label] of rows) {
      const div = el('div');
      div.appendChild(el('dt', {}, label));
      div.appendChild(el('dd', { 'data-room-field': field }, '–'));
      dl.appendChild(div);
    }
    card.appendChild(dl);
    card.appendChild(el('p', { class: 'note', 'data-room-field': 'settings' }));
    card.appendChild(el('div', { class: 'chart', 'data-chart': 'room-rate' }));
    card.appendChild(el('div', { class: 'chart', 'data-chart': 'room-people' }));

    // The rate form, as the operator's only control here: one request at a time, the outcome shown.
    const form = el('form', { class: 'room-form', 'data-room-form': '', novalidate: '' });
    const inputId = 'admit-per-s-' + ++roomSeq;
    form.appendChild(el('label', { for: inputId }, 'New admissions per second'));
    form.appendChild(el('input', { id: inputId, name: 'admit_per_s', type: 'number', min: '1',
      max: String(ADMIT_PER_S_MAX), step: '1', inputmode: 'numeric', autocomplete: 'off', required: '' }));
    form.appendChild(el('button', { type: 'submit' }, 'Set rate'));
    form.appendChild(el('p', { class: 'room-result', role: 'status', 'aria-live': 'polite', 'data-room-result': '' }));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      setRate(c.id, form);
    });
    card.appendChild(form);
    return card;
  }

  function roomResult(form, kind, text) {
    const p = form.querySelector('[data-room-result]');
    p.dataset.kind = kind;
    p.textContent = text;
  }

  async function setRate(id, form) {
    if (form.dataset.busy === 'true') return;
    const input = form.querySelector('input[name="admit_per_s"]');
    const button = form.querySelector('button');
    const raw = input.value.trim();
    const n = Number(raw);
    if (!/^\d+$/.test(raw) || !Number.isSafeInteger(n) || n < 1 || n > ADMIT_PER_S_MAX) {
      roomResult(form, 'error', 'Enter a whole number of admissions per second from 1 to ' + ADMIT_PER_S_MAX + '.');
      input.focus();
      return;
    }
    form.dataset.busy = 'true';
    button.disabled = true;
    input.disabled = true;
    roomResult(form, '', 'Setting ' + n + ' admissions per second…');
    try {
      const view = await api('/admin/v1/campaigns/' + encodeURIComponent(id) + '/waiting-room',
        { method: 'POST', body: { admit_per_s: n } });
      const set = view && view.waiting_room_settings && view.waiting_room_settings.admit_per_s;
      roomResult(form, 'ok', 'Admissions set to ' + (typeof set === 'number' ? set : n) + ' per second at ' +
        new Date().toLocaleTimeString() + '; every gateway applies it at its next refresh of the room.');
      input.value = '';
      // Show the new settings now rather than at the next refresh.
      if (running && failures === 0) schedule(0);
    } catch (e) {
      if (e instanceof Unauthorized) {
        storeToken('');
        showLogin('The admin token was refused (401 unauthorized). Enter a valid token.');
        return;
      }
      if (e instanceof HttpError) {
        const why = e.message + (e.serverMessage ? ': ' + e.serverMessage : '');
        const again = e.retryAfterMs ? ' Try again in ' + Math.ceil(e.retryAfterMs / 1000) + ' s.' : '';
        roomResult(form, e.status >= 500 || e.status === 429 ? 'warn' : 'error', 'Not changed (' + why + ').' + again);
      } else {
        // No answer: the change may or may not have been applied.
        roomResult(form, 'warn', 'No clear answer (' + ((e && e.message) || e) + '): the rate may or may not have ' +
          'changed. Check "Rate set" after the next refresh before sending again.');
      }
    } finally {
      form.dataset.busy = 'false';
      button.disabled = false;
      input.disabled = false;
    }
  }

  function renderRooms(polled, stats, now) {
    const root = $('rooms');
    const withRoom = polled.filter((c) => {
      const s = stats.get(c.id);
      return s && s.waiting_room && typeof s.waiting_room === 'object';
    });
    const wanted = new Set(withRoom.map((c) => c.id));
    for (const card of Array.from(root.children)) {
      if (!wanted.has(card.dataset.roomCampaign)) {
        destroyRoomCharts(rooms.get(card.dataset.roomCampaign));
        rooms.delete(card.dataset.roomCampaign);
        card.remove();
      }
    }
    $('rooms-section').hidden = withRoom.length === 0;
    for (const c of withRoom) {
      const w = stats.get(c.id).waiting_room;
      const r = recordRoom(c.id, w, now);
      let card = root.querySelector('[data-room-campaign="' + CSS.escape(c.id) + '"]');
      if (!card) {
        card = roomCard(c);
        root.appendChild(card);
      }
      const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
      const set = w.settings || {};
      for (const f of ['queued', 'waiting', 'pre_queued', 'admitted', 'active', 'capacity', 'abandoned']) {
        roomField(card, f, num(w[f]));
      }
      roomField(card, 'admitted_per_s', num(w.admitted_per_s));
      roomField(card, 'admit_per_s', num(set.admit_per_s));
      const acc = w.eta_accuracy || {};
      const samples = num(acc.samples), within = num(acc.within_30pct), err = num(acc.mean_abs_error_pct);
      roomField(card, 'eta_samples', samples);
      roomField(card, 'eta_within_30pct', within, within === null ? undefined
        : within + ' / ' + (samples || 0) + (samples ? ' (' + Math.round((100 * within) / samples) + ' %)' : ''));
      roomField(card, 'eta_mean_abs_error_pct', samples ? err : null, err === null ? undefined : err + ' %');

      const settings = card.querySelector('[data-room-field="settings"]');
      const settingsText = 'Settings: ' + fmt(set.admit_per_s) + ' admissions/s, at most ' + fmt(set.admitted_max) +
        ' admitted at once, an admission lasts ' + fmt(set.admit_ttl_s) + ' s, ' + fmt(set.stock_factor_pct) +
        ' % admitted per unit left, at most ' + fmt(set.queue_max) + ' queued.';
      if (settings.textContent !== settingsText) settings.textContent = settingsText;
      const input = card.querySelector('input[name="admit_per_s"]');
      if (typeof set.admit_per_s === 'number') input.placeholder = String(set.admit_per_s);

      const flags = card.querySelector('.flags');
      flags.textContent = '';
      if (w.blocked) flags.appendChild(el('span', { class: 'flag', 'data-room-flag': 'blocked', title: 'Active buyers are at the capacity: admissions wait for them to finish.' }, 'blocked: at capacity'));
      if (w.queue_sold_out) flags.appendChild(el('span', { class: 'flag', 'data-room-flag': 'queue_sold_out', title: 'Nobody still waiting can be admitted: they are told sold out.' }, 'queue sold out'));
      if (now - r.asOfSeenAt > ROOM_STALE_MS) {
        flags.appendChild(el('span', { class: 'flag', 'data-room-flag': 'stale', title: 'as_of_ms has not changed since then' },
          'not updated for ' + Math.round((now - r.asOfSeenAt) / 1000) + ' s'));
      }

      if (typeof uPlot !== 'function') continue; // renderCharts says the library did not load
      if (!r.charts) {
        r.charts = {
          rate: roomRateChart(card.querySelector('[data-chart="room-rate"]'), r),
          people: roomPeopleChart(card.querySelector('[data-chart="room-people"]'), r),
        };
      } else {
        r.charts.rate.setData([r.t, r.rate, r.target]);
        r.charts.people.setData([r.t, r.waiting, r.active, r.capacity]);
      }
      showLatest(r.charts.rate, r.t.length);
      showLatest(r.charts.people, r.t.length);
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
      for (const card of document.querySelectorAll('[data-room-campaign]')) {
        const r = rooms.get(card.dataset.roomCampaign);
        if (!r || !r.charts) continue;
        const w = chartWidth(card.querySelector('[data-chart="room-rate"]'));
        r.charts.rate.setSize({ width: w, height: 200 });
        r.charts.people.setSize({ width: w, height: 200 });
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

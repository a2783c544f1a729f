// Buyer item page: token, clock sync, campaign state, countdown, grab, order polling.
// Plain ES2020, no dependencies, no inline code (CSP `default-src 'self'` friendly).
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const el = { who: $('who'), form: $('token-form'), input: $('token-input'), change: $('change-token'),
    title: $('title'), price: $('price'), stockTotal: $('stock-total'), state: $('state'),
    remaining: $('remaining'), startsAt: $('starts-at'), endsAt: $('ends-at'), cdWrap: $('countdown-wrap'),
    cd: $('countdown'), clockNote: $('clock-note'), grab: $('grab'), hint: $('hint'), result: $('result'),
    check: $('check-order') };
  const campaignId = (document.body.dataset.campaignId || '').trim();
  const TOKEN_KEY = 'seckill.buyer_token';
  const STATE_TEXT = {
    scheduled: 'Not started yet', live: 'Live: grab now!', sold_out: 'Sold out',
    paused: 'Paused by the shop', ended: 'Ended',
  };
  const ERROR_TEXT = {
    already_bought: 'You already have an order for this item (one per buyer).',
    sold_out: 'Sorry, it is sold out.',
    ended: 'Sorry, the sale has ended.',
    not_started: 'The sale has not started yet. Try again in a moment.',
    paused: 'The sale is paused. The button comes back when it resumes.',
    rate_limited: 'Too many requests. Please wait a moment.',
    overloaded: 'The shop is very busy right now. Please try again in a moment.',
    unavailable: 'The shop is briefly unavailable. Please try again in a moment.',
    unauthorized: 'Your buyer token was not accepted. Please paste a valid token.',
    bad_request: 'The request was not understood. Reload the page and try again.',
    quiz_failed: 'The quiz answer was not accepted. Reload the page and try again.',
    campaign_not_found: 'This sale does not exist.',
  };

  const mem = {}; // fallback when sessionStorage is unavailable
  const store = {
    get(k) { try { return sessionStorage.getItem(k); } catch (_) { return mem[k] || null; } },
    set(k, v) { try { sessionStorage.setItem(k, v); } catch (_) { mem[k] = v; } },
    del(k) { try { sessionStorage.removeItem(k); } catch (_) { delete mem[k]; } },
  };

  let token = null, campaign = null, inFlight = false, polling = false, synced = false;
  let offset = 0; // server clock minus local clock, ms
  let blockedUntil = 0; // local ms; grab disabled until then (Retry-After, backoff)
  let busyStreak = 0; // consecutive 503s, grows the backoff
  let done = false; // an order exists or buying is no longer possible for this buyer
  let startRefreshDone = false;
  let netNote = ''; // shown while the campaign cannot be loaded
  let finalState = null; // sold_out / ended learnt from a grab answer beats a cached campaign

  const serverNow = () => Date.now() + offset;
  const jitter = (base, spread) => base + Math.random() * spread;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const fmtTime = (ms) => new Date(ms).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
  const fmtCents = (c) => Math.floor(c / 100) + '.' + String(c % 100).padStart(2, '0');
  const setText = (node, text) => { if (node.textContent !== text) node.textContent = text; };
  const say = (text, kind) => { el.result.textContent = text; el.result.dataset.kind = kind || 'info'; };

  async function api(path, opts = {}, timeoutMs = 8000) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), timeoutMs);
    try {
      const res = await fetch('/api/v1' + path, Object.assign({ signal: ctl.signal, credentials: 'omit' }, opts));
      const body = await res.json().catch(() => null);
      return { status: res.status, body: body || {}, headers: res.headers };
    } finally { clearTimeout(timer); }
  }
  const authHeaders = () => ({ Authorization: 'Bearer ' + token });
  const orderKey = () => 'seckill.order.' + campaignId + '.' + ((jwtPayload(token || '') || {}).sub || '');

  // ---- 1. buyer token ---------------------------------------------------
  function jwtPayload(t) {
    try {
      let b64 = t.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      b64 += '='.repeat((4 - (b64.length % 4)) % 4);
      const bytes = Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
      return JSON.parse(new TextDecoder().decode(bytes));
    } catch (_) { return null; }
  }
  function tokenFromFragment() {
    const hash = location.hash.replace(/^#/, '');
    if (!hash) return null;
    const params = new URLSearchParams(hash);
    const t = params.get('token');
    if (t === null) return null;
    params.delete('token');
    const rest = params.toString();
    history.replaceState(history.state, '', location.pathname + location.search + (rest ? '#' + rest : ''));
    return t.trim() || null;
  }
  function setToken(t) {
    token = t;
    if (t) store.set(TOKEN_KEY, t); else store.del(TOKEN_KEY);
    renderAccount();
    render();
  }
  function renderAccount() {
    el.form.hidden = !!token;
    el.change.hidden = !token;
    if (!token) { el.who.textContent = 'Not signed in. A buyer token is needed to grab.'; return; }
    const p = jwtPayload(token);
    const sub = p && p.sub != null ? String(p.sub) : 'unknown buyer';
    const expired = p && typeof p.exp === 'number' && p.exp * 1000 < serverNow();
    el.who.textContent = 'Signed in as ' + sub + (expired ? ' (token expired)' : '');
  }
  el.form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = el.input.value.trim().replace(/^Bearer\s+/i, '');
    el.input.value = '';
    if (t) { done = !!finalState; setToken(t); resumeOrder(); }
  });
  el.change.addEventListener('click', () => { setToken(null); el.input.focus(); });

  // ---- 2. clock sync ----------------------------------------------------
  async function syncClock(samples = 3) {
    let best = null;
    for (let i = 0; i < samples; i++) {
      try {
        const t0 = Date.now();
        const r = await api('/time', { cache: 'no-store' }, 4000);
        const t1 = Date.now();
        if (r.status === 200 && typeof r.body.now_ms === 'number' && (!best || t1 - t0 < best.rtt)) {
          best = { rtt: t1 - t0, offset: r.body.now_ms - (t0 + t1) / 2 };
        }
      } catch (_) { /* try the next sample */ }
      if (i + 1 < samples) await sleep(jitter(80, 120));
    }
    if (best) {
      offset = best.offset; synced = true;
      el.clockNote.textContent = 'Clock synced with the shop (±' + Math.ceil(best.rtt / 2) + ' ms).';
    } else if (!synced) {
      el.clockNote.textContent = 'Could not sync the clock with the shop; using this device\u2019s clock.';
    }
  }

  // ---- 3. campaign ------------------------------------------------------
  async function refreshCampaign() {
    try {
      const r = await api('/campaigns/' + encodeURIComponent(campaignId));
      if (r.status === 200) { campaign = r.body; netNote = ''; renderCampaign(); return true; }
      netNote = r.status === 404 ? 'This sale does not exist.' : 'The shop is busy; retrying…';
    } catch (_) {
      netNote = 'Connection problem; retrying…';
    }
    return false;
  }
  async function campaignLoop() {
    for (;;) {
      const ok = await refreshCampaign();
      const base = document.hidden ? 10000 : ok ? 1800 : 4000;
      await sleep(jitter(base, 600));
    }
  }
  function renderCampaign() {
    const c = campaign;
    if (typeof c.title === 'string') { el.title.textContent = c.title; document.title = c.title + ' · Flash sale'; }
    if (Number.isInteger(c.price_cents)) el.price.textContent = fmtCents(c.price_cents);
    if (c.stock_total != null) el.stockTotal.textContent = String(c.stock_total);
    el.remaining.textContent = c.remaining_hint == null ? '–' : String(c.remaining_hint);
    el.startsAt.textContent = c.starts_at_ms ? fmtTime(c.starts_at_ms) : '–';
    el.endsAt.textContent = c.ends_at_ms ? fmtTime(c.ends_at_ms) : '–';
    render();
  }
  // The server derives state from its clock; a cached "scheduled" past the start is treated as live.
  function effectiveState() {
    if (!campaign) return null;
    if (finalState) return finalState;
    const now = serverNow();
    const s = campaign.state;
    if ((s === 'live' || s === 'scheduled') && campaign.ends_at_ms && now >= campaign.ends_at_ms) return 'ended';
    if (s === 'scheduled' && now >= campaign.starts_at_ms) return 'live';
    return s;
  }

  // ---- 4. countdown and button -------------------------------------------
  function fmtCountdown(ms) {
    const t = Math.max(0, Math.floor(ms / 100));
    const p2 = (n) => String(n).padStart(2, '0');
    const h = Math.floor(t / 36000), m = Math.floor(t / 600) % 60, s = Math.floor(t / 10) % 60;
    return p2(h) + ':' + p2(m) + ':' + p2(s) + '.' + (t % 10);
  }
  function render() {
    const state = effectiveState();
    const now = serverNow();
    const scheduled = campaign && campaign.state === 'scheduled' && now < campaign.starts_at_ms;
    el.cdWrap.hidden = !scheduled;
    if (scheduled) {
      setText(el.cd, fmtCountdown(campaign.starts_at_ms - now));
      el.cd.setAttribute('datetime', new Date(campaign.starts_at_ms).toISOString());
    } else if (campaign && campaign.state === 'scheduled' && !startRefreshDone) {
      startRefreshDone = true; // crossed the start: pick up the live state soon, spread over 0.5 s
      setTimeout(refreshCampaign, jitter(0, 500));
    }
    if (state) setText(el.state, STATE_TEXT[state] || state);
    el.state.dataset.state = state || '';

    let enabled = false, hint = '';
    const waitS = Math.ceil((blockedUntil - Date.now()) / 1000);
    if (!campaignId || campaignId.includes('{{')) hint = 'This page must be opened through the shop (no campaign id).';
    else if (!campaign) hint = netNote || 'Loading the sale…';
    else if (done && !finalState) hint = 'You already have an order for this sale.';
    else if (inFlight) hint = 'Sending your request…';
    else if (state === 'scheduled') hint = 'The button unlocks when the countdown reaches zero.';
    else if (state === 'sold_out') hint = 'Sold out. Thank you for taking part.';
    else if (state === 'ended') hint = 'This sale has ended.';
    else if (state === 'paused') hint = 'The sale is paused. Please wait.';
    else if (state !== 'live') hint = 'The sale is not open.';
    else if (!token) hint = 'Paste your buyer token above to grab.';
    else if (waitS > 0) hint = 'You can try again in ' + waitS + ' s.';
    else enabled = true;
    el.grab.disabled = !enabled;
    setText(el.grab, inFlight ? 'Sending…' : 'Grab');
    setText(el.hint, hint);
  }

  // ---- 5. grab ------------------------------------------------------------
  function retryAfterMs(headers) {
    const v = headers.get('Retry-After');
    if (!v) return 1000;
    const secs = Number(v);
    if (Number.isFinite(secs)) return Math.max(0, secs) * 1000;
    const at = Date.parse(v);
    return Number.isFinite(at) ? Math.max(0, at - Date.now()) : 1000;
  }
  async function grab() {
    if (inFlight || el.grab.disabled || !token) return;
    inFlight = true;
    render();
    say('Sending your request…');
    let r;
    try {
      r = await api('/campaigns/' + encodeURIComponent(campaignId) + '/grab', { method: 'POST', cache: 'no-store',
        headers: Object.assign({ 'Content-Type': 'application/json' }, authHeaders()), body: '{}' }, 10000);
    } catch (_) { r = null; }
    inFlight = false;
    handleGrab(r);
    render();
  }
  function handleGrab(r) {
    if (!r) {
      blockedUntil = Date.now() + jitter(1500, 1500);
      say('Network problem: we could not tell whether your request arrived. You can try again shortly.', 'warn');
      return;
    }
    const b = r.body;
    if (r.status === 202 && b.order_id) { busyStreak = 0; startOrder(String(b.order_id)); return; }
    const code = b.code || '';
    const msg = ERROR_TEXT[code] || b.message || 'Something went wrong (HTTP ' + r.status + ').';
    if (code === 'already_bought') { done = true; say(msg, 'info'); return; }
    if (code === 'sold_out' || code === 'ended' || code === 'paused') {
      if (code === 'paused') { if (campaign) campaign.state = code; } else { finalState = code; done = true; }
      say(msg, code === 'paused' ? 'warn' : 'error');
      return;
    }
    if (code === 'unauthorized' || r.status === 401) { setToken(null); say(msg, 'error'); return; }
    if (code === 'rate_limited' || r.status === 429) {
      blockedUntil = Date.now() + retryAfterMs(r.headers);
    } else if (r.status === 503) {
      if (b.order_id) { startOrder(String(b.order_id)); return; }
      busyStreak = Math.min(busyStreak + 1, 4);
      blockedUntil = Date.now() + jitter(1000 * busyStreak, 1500 * busyStreak);
    } else if (code === 'not_started') {
      blockedUntil = Date.now() + jitter(500, 700);
      syncClock(2);
      setTimeout(refreshCampaign, jitter(200, 400));
    }
    say(msg, r.status >= 500 || r.status === 429 ? 'warn' : 'error');
  }
  el.grab.addEventListener('click', grab);

  // ---- 6. order polling ---------------------------------------------------
  function startOrder(orderId) {
    done = true;
    store.set(orderKey(), orderId);
    say('Queued, order ' + orderId + '. Waiting for confirmation…', 'info');
    pollOrder(orderId);
  }
  function showOrder(o) {
    const id = String(o.order_id);
    const payBy = o.pay_by_ms ? fmtTime(o.pay_by_ms) : 'the deadline';
    switch (o.status) {
      case 'queued': say('Your order is queued (order ' + id + '). Waiting for confirmation…', 'info'); return false;
      case 'confirmed': say('You won! Order ' + id + '. Pay by ' + payBy + '.', 'success'); return true;
      case 'paid': say('Order ' + id + ' is paid. Enjoy!', 'success'); return true;
      case 'cancelled': say('Order ' + id + ' was cancelled.', 'error'); return true;
      case 'expired': say('Order ' + id + ' expired: it was not paid in time.', 'error'); return true;
      default: say('Order ' + id + ': ' + String(o.status), 'info'); return true;
    }
  }
  async function pollOrder(orderId, tries = 60) {
    if (polling) return;
    polling = true;
    el.check.hidden = true;
    let final = false, stop = false;
    for (let i = 0; i < tries && !final && !stop; i++) {
      await sleep(i === 0 ? jitter(300, 400) : jitter(800, 400));
      if (!token) break;
      try {
        const r = await api('/orders/' + encodeURIComponent(orderId), { headers: authHeaders(), cache: 'no-store' }, 5000);
        if (r.status === 200) final = showOrder(r.body);
        else if (r.status === 401) { stop = true; setToken(null); say(ERROR_TEXT.unauthorized, 'error'); }
        else if (r.status === 403) { stop = true; say('This order belongs to another buyer.', 'error'); }
        // 404 (not written yet), 429, 5xx: keep waiting within the bound
      } catch (_) { /* network blip: next try */ }
    }
    polling = false;
    if (!final && !stop && token) {
      el.check.hidden = false;
      say('Order ' + orderId + ' is still being processed. Check again in a little while.', 'warn');
    }
  }
  function resumeOrder() {
    const id = token && store.get(orderKey());
    if (id) { done = true; pollOrder(id, 5); render(); }
  }
  el.check.addEventListener('click', () => {
    const id = token && store.get(orderKey());
    if (id) pollOrder(id, 30);
  });

  // ---- start ----------------------------------------------------------------
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) { syncClock(2).then(refreshCampaign); renderAccount(); }
  });
  setToken(tokenFromFragment() || store.get(TOKEN_KEY));
  if (!campaignId || campaignId.includes('{{')) { render(); return; }
  resumeOrder();
  syncClock(3).then(() => { renderAccount(); campaignLoop(); });
  setInterval(render, 100);
  setInterval(() => syncClock(3), 60000);
})();

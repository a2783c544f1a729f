// Buyer item page: token, clock sync, campaign state, countdown, waiting room, grab path, quiz, grab, order
// polling, pay.
// Plain ES2020, no dependencies, no inline code (CSP `default-src 'self'` friendly).
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const el = { who: $('who'), form: $('token-form'), input: $('token-input'), change: $('change-token'),
    title: $('title'), price: $('price'), stockTotal: $('stock-total'), state: $('state'),
    remaining: $('remaining'), startsAt: $('starts-at'), endsAt: $('ends-at'), cdWrap: $('countdown-wrap'),
    cd: $('countdown'), clockNote: $('clock-note'), grab: $('grab'), hint: $('hint'), result: $('result'),
    check: $('check-order'), quiz: $('quiz'), quizImage: $('quiz-image'), quizLoading: $('quiz-loading'),
    answer: $('quiz-answer'), quizRefresh: $('quiz-refresh'), quizNote: $('quiz-note'),
    pay: $('pay'), payButton: $('pay-button'), payCountdown: $('pay-countdown'), payNote: $('pay-note'),
    queue: $('queue'), queuePosition: $('queue-position'), queueProgress: $('queue-progress'), queueEta: $('queue-eta'),
    queueNote: $('queue-note') };
  const campaignId = (document.body.dataset.campaignId || '').trim();
  const TOKEN_KEY = 'seckill.buyer_token';
  const QUIZ_MIN_MS = 1000; // the server's default; a quiz answer may carry its own `min_answer_ms`
  const QUIZ_TTL_MS = 60000; // likewise `expires_in_ms`
  const STATE_TEXT = {
    scheduled: 'Not started yet', live: 'Live: grab now!', sold_out: 'Sold out',
    paused: 'Paused by the shop', ended: 'Ended',
  };
  // One sentence per error code the buyer endpoints can answer (README's table); anything else shows
  // the server's own message.
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
    bad_request: 'The request was not understood. Please try again; reload the page if it keeps happening.',
    quiz_failed: 'Your answer was not accepted.',
    campaign_not_found: 'This sale does not exist.',
    not_found: 'The shop did not accept this purchase link. Getting a fresh one: please try again in a moment.',
    forbidden: 'The shop does not allow this purchase from your account right now.',
    payload_too_large: 'The request was too large for the shop. Please try again; reload the page if it keeps happening.',
    method_not_allowed: 'The shop did not accept this kind of request. Getting a fresh purchase link: please try again.',
    internal: 'Something went wrong at the shop. Please try again in a moment.',
    too_many_campaigns: 'The shop cannot run this sale right now. Please try again later.',
    needs_reconcile: 'The shop is checking this sale\u2019s stock. Please try again later.',
    campaign_stopped: 'This sale was stopped by the shop.',
    order_not_found: 'This order was not found.',
    order_not_confirmed: 'Your order is not confirmed yet. Please wait a moment.',
    order_expired: 'This order expired: it was not paid in time.',
    order_cancelled: 'This order was cancelled.',
    // The waiting room (campaigns with `waiting_room: true`).
    not_admitted: 'The shop says it is not your turn to buy yet. Checking your place in the line…',
    admission_expired: 'Your turn to buy has passed without a purchase, so your place in this sale is spent. Sorry!',
    bad_ticket: 'Your place in the line could not be confirmed for this account. Joining the line again…',
    queue_reset: 'The shop restarted its waiting line. Joining it again…',
    queue_full: 'The waiting line is full right now.',
    no_waiting_room: 'This sale has no waiting line: you can buy directly.',
  };
  // Codes whose server message adds something the buyer needs (why a quiz answer failed, what was refused).
  const WITH_DETAIL = new Set(['quiz_failed', 'forbidden', 'bad_request']);

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
  let lastResync = 0; // local ms of the last clock re-sync caused by a not_started answer

  // The funnel, fetched from the start instant: the grab path (per buyer, maybe secret) and, for quiz
  // campaigns, one question at a time. Every answer attempt spends the question.
  let grabPath = null; // same-origin path to POST the grab to
  let pathBusy = false, pathRetryAt = 0, pathStreak = 0;
  let quiz = null; // { token, image, answerableAt, staleAt } (local ms)
  let quizBusy = false, quizRetryAt = 0, quizStreak = 0, quizNote = '', lastQuizAsk = 0;
  let liveSeenAt = 0; // local ms when the page first saw the sale live (spreads the first fetches)
  let prepNote = ''; // why the grab path is not there yet
  let epoch = 0; // bumped when the buyer changes: answers for an earlier buyer are dropped

  // This buyer's order, as last heard: { id, status, payBy (server ms, 0 when unknown), priceCents }.
  let order = null;
  let pollingId = null; // the order the poll loop is following
  let pollGen = 0; // bumped to end a running poll loop (another buyer, another order)
  let wakePoll = null; // cuts the poll loop's current wait short
  let paying = false, payBlockedUntil = 0; // local ms; Pay disabled until then (Retry-After, backoff)
  let payNote = '', payNoteKind = ''; // why the last payment attempt did not settle the order
  let deadlineSeen = false; // the synced clock passed the current order's pay_by_ms

  // The waiting room (campaigns with `waiting_room: true`): the buyer joins the line on opening the page
  // (before the start too), polls it, and gets the grab path from the admission, never from grab-path.
  let noRoom = false; // the shop answered no_waiting_room: the campaign's JSON was stale
  let queueTicket = null; // this buyer's ticket (kept in sessionStorage per campaign and buyer)
  let roomLoaded = false; // the stored ticket of the current buyer was read
  let firstPos = 0; // the first position heard after the draw: the progress counts from it
  let queue = null; // the line's last answer for this buyer (QueueStatus), null while joining or re-checking
  let queueBusy = false, queueAt = 0, queueStreak = 0; // queueAt: local ms of the next join or poll
  let queueNote = '', queueNoteKind = ''; // why the line's answer is missing (retrying) or what changed
  let queueFinal = ''; // 'admission_expired': the buyer's turn passed unused; nothing more to wait for
  let admittedUntil = 0; // local ms; the page asks the line again after it (the shop extends or ends the turn)

  const serverNow = () => Date.now() + offset;
  const jitter = (base, spread) => base + Math.random() * spread;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const fmtTime = (ms) => new Date(ms).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
  const fmtCents = (c) => Math.floor(c / 100) + '.' + String(c % 100).padStart(2, '0');
  const setText = (node, text) => { if (node.textContent !== text) node.textContent = text; };
  const say = (text, kind, orderId) => {
    el.result.textContent = text;
    el.result.dataset.kind = kind || 'info';
    if (orderId) el.result.dataset.orderId = orderId; else delete el.result.dataset.orderId;
    // The order's status as the page last heard it (queued from the grab's answer, then the shop's).
    if (orderId && order && order.id === orderId) el.result.dataset.orderStatus = order.status;
    else delete el.result.dataset.orderStatus;
  };
  const errorText = (code, body, status) => {
    const msg = typeof body.message === 'string' ? body.message.trim() : '';
    const known = ERROR_TEXT[code];
    if (!known) return msg || 'Something went wrong (HTTP ' + status + ').';
    return WITH_DETAIL.has(code) && msg ? known + ' ' + msg.charAt(0).toUpperCase() + msg.slice(1).replace(/\.?$/, '.') : known;
  };
  // A path on this page's own origin (the CSP allows nothing else), or null.
  const sameOriginPath = (p) => {
    if (typeof p !== 'string' || !p.startsWith('/') || p.startsWith('//') || p.includes('\\')) return null;
    try { return new URL(p, location.href).origin === location.origin ? p : null; } catch (_) { return null; }
  };

  async function request(url, opts = {}, timeoutMs = 8000) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), timeoutMs);
    try {
      const res = await fetch(url, Object.assign({ signal: ctl.signal, credentials: 'omit' }, opts));
      const body = await res.json().catch(() => null);
      return { status: res.status, body: body && typeof body === 'object' ? body : {}, headers: res.headers };
    } finally { clearTimeout(timer); }
  }
  const api = (path, opts, timeoutMs) => request('/api/v1' + path, opts, timeoutMs);
  const campaignPath = () => '/campaigns/' + encodeURIComponent(campaignId);
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
    // The grab path and the question belong to one buyer.
    epoch++;
    grabPath = null; pathRetryAt = 0; pathStreak = 0; prepNote = '';
    dropQuiz(); quizRetryAt = 0; quizStreak = 0; quizNote = '';
    // So does the order: stop following the previous buyer's.
    order = null; pollingId = null; pollGen++; paying = false; payBlockedUntil = 0; payNote = '';
    // And the place in the waiting line (the next buyer's ticket is read from storage when needed).
    queueTicket = null; roomLoaded = false; firstPos = 0; queue = null; queueAt = 0; queueStreak = 0;
    queueNote = ''; queueNoteKind = ''; queueFinal = ''; admittedUntil = 0;
    if (wakePoll) wakePoll();
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
  // The server said "not started" although our clock says it has: re-sync, at most every 5 s.
  function resyncSoon() {
    if (Date.now() - lastResync < 5000) return;
    lastResync = Date.now();
    syncClock(2);
  }

  // ---- 3. campaign ------------------------------------------------------
  async function refreshCampaign() {
    try {
      const r = await api(campaignPath());
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
    // The waiting line says nobody still in it can buy: sold out for this buyer (the page keeps checking).
    if (roomSoldOut() && (s === 'live' || s === 'scheduled' || s === 'paused')) return 'sold_out';
    if (s === 'scheduled' && now >= campaign.starts_at_ms) return 'live';
    return s;
  }
  const hasQuiz = () => !!(campaign && campaign.quiz === true);
  const hasRoom = () => !!(campaign && campaign.waiting_room === true) && !noRoom;
  const roomSoldOut = () => hasRoom() && !!token && !!queue && queue.state === 'sold_out';
  // Admitted, with the grab path the admission gave: the quiz and Grab are this buyer's now.
  const admittedNow = () => hasRoom() && !!queue && queue.state === 'admitted' && !!grabPath;

  // ---- 3b. waiting room (campaigns with `waiting_room: true`) ----------------
  // `POST .../queue` joins (the same ticket again when already in line); `GET .../queue` with the ticket
  // in `X-Queue-Ticket` polls. Driven by tick(): one request at a time, the next one at `queueAt`
  // (the shop's `poll_after_ms`, jittered; slower in a hidden tab; backoff after failures).
  const roomKey = () => 'seckill.queue.' + campaignId + '.' + ((jwtPayload(token || '') || {}).sub || '');
  function loadRoom() {
    roomLoaded = true;
    let saved = null;
    try { saved = JSON.parse(store.get(roomKey()) || 'null'); } catch (_) { saved = null; }
    if (saved && typeof saved.ticket === 'string' && saved.ticket) {
      queueTicket = saved.ticket;
      firstPos = Number.isInteger(saved.first) && saved.first > 0 ? saved.first : 0;
    }
  }
  function saveRoom() {
    if (queueTicket) store.set(roomKey(), JSON.stringify({ ticket: queueTicket, first: firstPos }));
    else store.del(roomKey());
  }
  // Forgets the ticket: the next step joins again (POST).
  function dropTicket() {
    queueTicket = null; firstPos = 0; queue = null;
    saveRoom();
  }
  // Not (or no longer) admitted: the grab path and the question went with the admission.
  function leaveAdmission() {
    if (!grabPath) return;
    grabPath = null; admittedUntil = 0;
    dropQuiz();
  }
  function admissionExpired() {
    queueFinal = 'admission_expired';
    queue = null;
    leaveAdmission();
    say(ERROR_TEXT.admission_expired, 'error');
  }
  // The shop refused the admission's grab path (or the question): ask the line where this buyer stands.
  function recheckQueue() {
    queue = null;
    leaveAdmission();
    queueAt = Math.min(queueAt, Date.now() + jitter(300, 500));
  }
  const validQueue = (b, joining) => ['waiting', 'admitted', 'sold_out'].includes(b.state) &&
    (!joining || (typeof b.ticket === 'string' && b.ticket !== ''));

  // Called on every tick: joins or polls the line when it is time.
  function prepareQueue() {
    if (!hasRoom() || !token || done || queueFinal || queueBusy || inFlight) return;
    if (effectiveState() === 'ended') return;
    if (!roomLoaded) loadRoom();
    if (Date.now() >= queueAt) queueStep();
  }
  async function queueStep() {
    queueBusy = true;
    const mine = epoch;
    const joining = !queueTicket;
    const headers = authHeaders();
    if (!joining) headers['X-Queue-Ticket'] = queueTicket;
    let r;
    try {
      r = joining
        ? await api(campaignPath() + '/queue', { method: 'POST', cache: 'no-store',
          headers: Object.assign({ 'Content-Type': 'application/json' }, headers), body: '{}' }, 6000)
        : await api(campaignPath() + '/queue', { headers, cache: 'no-store' }, 6000);
    } catch (_) { r = null; }
    queueBusy = false;
    if (mine !== epoch) return;
    if (r && r.status === 200 && validQueue(r.body, joining)) applyQueue(r.body, joining);
    else queueFailure(r, joining);
    render();
  }
  // The next poll: the shop's `poll_after_ms` with a little jitter, slower while the tab is hidden.
  function nextPollMs(s) {
    const after = Number.isFinite(s.poll_after_ms) && s.poll_after_ms > 0 ? Math.min(Math.max(s.poll_after_ms, 250), 30000) : 1000;
    if (document.hidden) return Math.min(Math.max(after * 3, 3000), 15000) + jitter(0, 1000);
    let ms = after * jitter(0.9, 0.3);
    // Before the start: ask again just after it (spread over a second), when the place is drawn.
    const untilStart = Number.isFinite(s.starts_at_ms) ? s.starts_at_ms - serverNow() : -1;
    if (s.phase === 'pre_queue' && untilStart > 0) ms = Math.min(ms, untilStart + jitter(200, 1000));
    return ms;
  }
  function applyQueue(s, joining) {
    const local = Date.now();
    const was = queue;
    // A join after a refused ticket or a reset only counts as recovered once a poll with it works too.
    if (!joining) queueStreak = 0;
    queueNote = ''; queueNoteKind = '';
    // A join's ticket, or a newer one (the rank drawn at the start): keep it from now on.
    if (typeof s.ticket === 'string' && s.ticket) queueTicket = s.ticket;
    queue = s;
    if (s.state === 'waiting' && s.phase === 'queue' && Number.isInteger(s.position) && s.position > 0 &&
        (!firstPos || s.position > firstPos)) firstPos = s.position;
    saveRoom();
    if (s.state === 'admitted') {
      const path = sameOriginPath(s.grab_path);
      if (!path) {
        queue = null;
        leaveAdmission();
        queueStreak = 1;
        queueNote = 'The shop sent an unusable purchase link; checking again…'; queueNoteKind = 'warn';
        queueAt = local + jitter(1000, 1000);
        return;
      }
      if (grabPath !== path) { grabPath = path; pathRetryAt = 0; prepNote = ''; }
      admittedUntil = Number.isFinite(s.admitted_until_ms) && s.admitted_until_ms > 0 ? s.admitted_until_ms - offset : 0;
      // Asked again once the turn should be over: the shop then ends it (admission_expired) or extends it.
      queueAt = admittedUntil ? Math.max(admittedUntil + jitter(500, 1000), local + 5000) : local + jitter(30000, 10000);
      if ((!was || was.state !== 'admitted') && !order) {
        const left = admittedUntil ? ' You have ' + fmtWait((admittedUntil - local) / 1000) + '.' : '';
        say('It\u2019s your turn! ' + (hasQuiz() ? 'Type the characters in the picture, then press Grab.' : 'Press Grab to buy.') + left, 'info');
      }
      return;
    }
    leaveAdmission();
    // Sold out for everyone still in line: final-looking, but units may come back (an unpaid order
    // expires), so the page still asks every ~10 s.
    queueAt = local + (s.state === 'sold_out' ? (document.hidden ? jitter(20000, 10000) : jitter(9000, 2000)) : nextPollMs(s));
  }
  function queueFailure(r, joining) {
    const local = Date.now();
    queueStreak = Math.min(queueStreak + 1, 8);
    const backoff = () => jitter(1000 * queueStreak, 1000 * queueStreak); // 1-2 s, growing to 8-16 s
    const note = (text, kind, ms) => { queueNote = text; queueNoteKind = kind; queueAt = local + ms; };
    if (!r) { note('Connection problem while checking your place in the line; retrying…', 'warn', backoff()); return; }
    const code = r.body.code || '';
    if (r.status === 200) { note('The shop sent an unusable answer about the line; retrying…', 'warn', backoff()); return; }
    if (code === 'unauthorized' || r.status === 401) { setToken(null); say(ERROR_TEXT.unauthorized, 'error'); return; }
    if (code === 'no_waiting_room') {
      // The campaign has no line (any more): the ordinary funnel (grab-path) takes over.
      noRoom = true; dropTicket(); queueNote = '';
      setTimeout(refreshCampaign, jitter(200, 400));
      return;
    }
    if (code === 'admission_expired') { admissionExpired(); return; }
    if (code === 'ended' || code === 'campaign_stopped') {
      finalState = 'ended'; done = true; queue = null; leaveAdmission();
      say(ERROR_TEXT[code], 'error');
      return;
    }
    if (code === 'sold_out') {
      queue = Object.assign({}, queue || {}, { state: 'sold_out' });
      leaveAdmission();
      queueNote = ''; queueAt = local + jitter(9000, 2000);
      return;
    }
    if (code === 'queue_reset') {
      // The line was lost (the shop restarted it): join again, spread over a moment with the rest of the crowd.
      dropTicket();
      leaveAdmission();
      note(ERROR_TEXT.queue_reset, 'warn', jitter(200, 1500) * Math.min(queueStreak, 4));
      return;
    }
    if (!joining && (code === 'bad_ticket' || code === 'bad_request' || r.status === 403)) {
      // The stored ticket is not this buyer's (or was not understood): join again.
      dropTicket();
      leaveAdmission();
      note(ERROR_TEXT.bad_ticket, 'warn', jitter(300, 700) * Math.min(queueStreak, 4));
      return;
    }
    if (code === 'rate_limited' || r.status === 429) {
      note(ERROR_TEXT.rate_limited, 'warn', Math.max(retryAfterMs(r.headers), backoff()) + jitter(0, 500));
      return;
    }
    if (code === 'queue_full') {
      note(ERROR_TEXT.queue_full, 'warn', Math.max(retryAfterMs(r.headers), backoff()) + jitter(0, 1000));
      return;
    }
    if (r.status === 503) {
      note('The waiting room is briefly unavailable; your place is kept.', 'warn',
        Math.max(retryAfterMs(r.headers), backoff()) + jitter(0, 500));
      return;
    }
    if (code === 'campaign_not_found') {
      note(ERROR_TEXT.campaign_not_found, 'error', jitter(5000, 5000));
      setTimeout(refreshCampaign, jitter(200, 400));
      return;
    }
    if (r.status === 404) {
      note('The shop does not offer its waiting room right now; retrying…', 'warn', Math.max(jitter(5000, 5000), backoff()));
      return;
    }
    note(errorText(code, r.body, r.status) + ' Retrying…', r.status >= 500 ? 'warn' : 'error', backoff());
  }

  // "about 2 min 10 s": coarser as the wait grows (an estimate, not a promise).
  function fmtWait(secs) {
    const t = Math.max(0, Math.round(secs));
    if (t < 5) return 'a few seconds';
    if (t < 60) return 'about ' + t + ' s';
    if (t < 600) {
      const r = Math.round(t / 10) * 10, m = Math.floor(r / 60), s = r % 60;
      return 'about ' + m + ' min' + (s ? ' ' + s + ' s' : '');
    }
    if (t < 3600) return 'about ' + Math.round(t / 60) + ' min';
    const m = Math.round(t / 60);
    return 'about ' + Math.floor(m / 60) + ' h' + (m % 60 ? ' ' + (m % 60) + ' min' : '');
  }
  const fmtCount = (n) => Number(n).toLocaleString('en-US');
  const setAttr = (node, name, value) => {
    if (value === null) { if (node.hasAttribute(name)) node.removeAttribute(name); }
    else if (node.getAttribute(name) !== value) node.setAttribute(name, value);
  };
  // The waiting-room panel: shown while the buyer waits (or the line is sold out), hidden once admitted.
  function renderQueue(state) {
    const room = hasRoom() && !!token;
    let panel = 'off';
    if (room) {
      if (queueFinal) panel = 'expired';
      else if (state === 'ended' || finalState === 'ended') panel = 'ended';
      else if (queue) panel = queue.state === 'admitted' && !grabPath ? 'checking' : queue.state;
      else panel = queueTicket ? 'checking' : 'joining';
    }
    setAttr(el.queue, 'data-state', panel);
    const show = room && !done && !queueFinal && panel !== 'ended' && panel !== 'admitted';
    el.queue.hidden = !show;
    if (!show) return;
    const s = queue;
    const waiting = !!s && s.state === 'waiting';
    const pre = waiting && s.phase === 'pre_queue';
    const pos = waiting && Number.isInteger(s.position) && s.position > 0 ? s.position : 0;
    setAttr(el.queue, 'data-phase', s && typeof s.phase === 'string' ? s.phase : null);
    let text, info = '';
    if (panel === 'sold_out') {
      text = 'Sold out.';
      info = 'Every unit left is sold or held by buyers ahead of you. If one comes back, this page lets you in by itself.';
    } else if (pre) {
      const of = Math.max(Number.isInteger(s.queued) ? s.queued : 0, pos);
      text = 'Your place is drawn at random when the sale starts; expected place about ' + fmtCount(pos) + ' of ' + fmtCount(of) + '.';
      info = 'Everyone who joins before the start has the same chance: there is no need to hurry. Keep this page open.';
    } else if (pos) {
      text = 'You are number ' + fmtCount(pos) + ' in line.';
      const rate = Number(s.admit_per_s);
      const shownRate = Math.round(rate * 10) / 10;
      info = (Number.isInteger(s.queued) && s.queued > 0
        ? fmtCount(s.queued) + (s.queued === 1 ? ' person has' : ' people have') + ' joined the line. ' : '') +
        (shownRate > 0 ? 'The shop lets in about ' + fmtCount(shownRate) + (shownRate === 1 ? ' buyer' : ' buyers') + ' a second. ' : '') +
        'Keep this page open: the Grab button unlocks at your turn.';
    } else {
      text = panel === 'checking' ? 'Checking your place in the line…' : 'Joining the line…';
    }
    setText(el.queuePosition, text);
    setAttr(el.queuePosition, 'data-position', pos ? String(pos) : null);

    // Progress: how far the line has moved since the buyer's first place after the draw.
    const showBar = waiting && (pre || pos > 0);
    el.queueProgress.hidden = !showBar;
    if (showBar) {
      if (pre || !firstPos) {
        setAttr(el.queueProgress, 'value', null); // indeterminate: the place is not drawn yet
        setAttr(el.queueProgress, 'aria-valuetext', pre ? 'Waiting for the start' : 'Starting');
      } else {
        const pct = Math.max(0, Math.min(100, Math.round(100 * (1 - pos / firstPos))));
        setAttr(el.queueProgress, 'value', String(pct));
        setAttr(el.queueProgress, 'aria-valuetext', pct + '% of the line ahead of you has gone through');
      }
    }
    const eta = waiting && Number.isFinite(s.eta_s) && s.eta_s >= 0 ? s.eta_s : null;
    el.queueEta.hidden = eta === null;
    if (eta !== null) {
      setText(el.queueEta, 'Estimated wait: ' + fmtWait(eta) + (pre ? ', counted from now (the sale starts first).' : '.'));
      setAttr(el.queueEta, 'data-eta-s', String(Math.round(eta)));
    }
    let note = info, kind = '';
    if (queueNote) {
      const waitS = Math.ceil((queueAt - Date.now()) / 1000);
      note = queueNote + (queueNoteKind === 'warn' && waitS > 1 ? ' Trying again in ' + waitS + ' s.' : '');
      kind = queueNoteKind;
    }
    setText(el.queueNote, note);
    setAttr(el.queueNote, 'data-kind', kind || null);
  }

  // ---- 4. grab path and quiz (from the start instant) ------------------------
  // Backoff for a refused or failed preparation request; also applies what the refusal teaches.
  function prepFailure(r, streak) {
    const spread = Math.min(1000 * streak, 8000);
    if (!r) return jitter(1000, spread);
    const code = r.body.code || '';
    if (code === 'not_started' || r.status === 425) { resyncSoon(); return jitter(300, 500); }
    if (code === 'rate_limited' || r.status === 429) return retryAfterMs(r.headers) + jitter(0, 300);
    if (code === 'unauthorized' || r.status === 401) {
      setToken(null); say(ERROR_TEXT.unauthorized, 'error'); return 0;
    }
    if (code === 'sold_out' || code === 'ended' || code === 'campaign_stopped') {
      finalState = code === 'sold_out' ? 'sold_out' : 'ended'; done = true; dropQuiz();
      say(ERROR_TEXT[code], 'error'); return 0;
    }
    if (code === 'already_bought') { done = true; dropQuiz(); say(ERROR_TEXT.already_bought, 'info'); return 0; }
    if (code === 'admission_expired') { admissionExpired(); return 0; }
    if (code === 'not_admitted' && hasRoom()) { recheckQueue(); return jitter(1000, spread); }
    if (code === 'paused') { if (campaign) campaign.state = 'paused'; return jitter(2000, 1000); }
    if (r.status === 503 && r.headers.get('Retry-After')) return retryAfterMs(r.headers) + jitter(0, spread);
    return jitter(1000, spread);
  }

  async function fetchGrabPath() {
    pathBusy = true;
    const mine = epoch;
    let r;
    try {
      r = await api(campaignPath() + '/grab-path', { headers: authHeaders(), cache: 'no-store' }, 6000);
    } catch (_) { r = null; }
    pathBusy = false;
    if (mine !== epoch) return;
    const code = r ? r.body.code || '' : '';
    if (r && r.status === 200 && sameOriginPath(r.body.grab_path)) {
      grabPath = r.body.grab_path; pathStreak = 0; prepNote = '';
    } else if (r && r.status === 404 && code === 'not_found') {
      // An older server without grab-path: the plain grab is the path.
      grabPath = '/api/v1' + campaignPath() + '/grab'; pathStreak = 0; prepNote = '';
    } else {
      pathStreak = Math.min(pathStreak + 1, 8);
      pathRetryAt = Date.now() + prepFailure(r, pathStreak);
      if (!r) prepNote = 'Connection problem while getting your purchase link; retrying…';
      else if (r.status === 200) prepNote = 'The shop sent an unusable purchase link; retrying…';
      else if (code === 'not_started' || r.status === 425) prepNote = 'Opening the sale…';
      else prepNote = errorText(code, r.body, r.status) + ' Retrying…';
    }
    render();
  }

  function dropQuiz() {
    quiz = null;
    if (el.quizImage.hasAttribute('src')) el.quizImage.removeAttribute('src');
    el.answer.value = '';
  }
  // `why`: shown under the new question (e.g. that the previous one expired).
  async function fetchQuiz(why = '') {
    quizBusy = true;
    lastQuizAsk = Date.now();
    dropQuiz();
    render();
    const mine = epoch;
    let r;
    try {
      r = await api(campaignPath() + '/quiz', { headers: authHeaders(), cache: 'no-store' }, 6000);
    } catch (_) { r = null; }
    const got = Date.now();
    quizBusy = false;
    if (mine !== epoch) return;
    const code = r ? r.body.code || '' : '';
    const image = r && r.status === 200 ? sameOriginPath(r.body.image_url) : null;
    if (image && typeof r.body.quiz_token === 'string' && r.body.quiz_token) {
      const num = (v, dflt) => (Number.isFinite(v) && v >= 0 ? v : dflt);
      const minMs = num(r.body.min_answer_ms, QUIZ_MIN_MS);
      const ttlMs = num(r.body.expires_in_ms, QUIZ_TTL_MS);
      quiz = {
        token: r.body.quiz_token,
        image,
        // Counted from when the question arrived, which is after the server issued it, plus a margin
        // for clock granularity: an answer sent then is never "too fast".
        answerableAt: got + minMs + 50,
        // Fetch the next one a little before the server would call this one expired.
        staleAt: got + Math.max(minMs + 1000, ttlMs - Math.min(3000, ttlMs / 10)),
      };
      quizStreak = 0; quizNote = why;
      el.answer.value = '';
      el.quizImage.src = image;
    } else {
      quizStreak = Math.min(quizStreak + 1, 8);
      quizRetryAt = Date.now() + prepFailure(r, quizStreak);
      if (!r) quizNote = 'Connection problem while loading the question; retrying…';
      else if (r.status === 200) quizNote = 'The shop sent an unusable question; retrying…';
      else if (code === 'not_started' || r.status === 425) quizNote = 'Opening the sale…';
      else if (r.status === 404 && code === 'not_found') {
        quizNote = 'The shop does not offer the question right now; retrying…';
        quizRetryAt = Date.now() + jitter(5000, 5000);
      } else quizNote = errorText(code, r.body, r.status) + ' Retrying…';
    }
    render();
  }
  el.quizImage.addEventListener('error', () => {
    // The picture did not load: ask for another question shortly (backoff grows).
    if (!quiz || el.quizImage.getAttribute('src') !== quiz.image) return;
    dropQuiz();
    quizStreak = Math.min(quizStreak + 1, 8);
    quizRetryAt = Date.now() + jitter(500, 1000 * quizStreak);
    quizNote = 'The picture did not load; getting another question…';
    render();
  });
  el.quizImage.addEventListener('load', render);
  el.quizRefresh.addEventListener('click', () => {
    if (quizBusy || inFlight || Date.now() - lastQuizAsk < 1000) return;
    quizRetryAt = 0;
    quizNote = '';
    fetchQuiz();
    el.answer.focus();
  });
  el.answer.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter') { ev.preventDefault(); grab(); }
  });

  // Called on every tick: starts whatever fetch the funnel is missing, once the sale is live (in a
  // waiting-room sale, once the buyer is admitted: the admission gave the grab path).
  function prepare() {
    if (!token || done || inFlight || !campaign || effectiveState() !== 'live') return;
    const room = hasRoom();
    if (room && !admittedNow()) return;
    const now = Date.now();
    // Spread the first fetches of a crowd over 0.25 s after the start instant.
    if (!liveSeenAt) liveSeenAt = now + jitter(0, 250);
    if (now < liveSeenAt) return;
    if (!room && !grabPath && !pathBusy && now >= pathRetryAt) fetchGrabPath();
    if (!hasQuiz() || quizBusy || document.hidden) return;
    if (quiz && now >= quiz.staleAt) { dropQuiz(); quizRetryAt = 0; fetchQuiz('The previous question expired; here is a new one.'); return; }
    if (!quiz && now >= quizRetryAt) fetchQuiz();
  }

  // ---- 5. countdown and button -------------------------------------------
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
    const local = Date.now();
    const room = hasRoom();
    // In a waiting-room sale "grab now" is only true at the buyer's turn.
    const inLine = state === 'live' && room && !!token && !done && !queueFinal && !admittedNow();
    if (state) setText(el.state, inLine ? 'Live: the line is moving' : STATE_TEXT[state] || state);
    el.state.dataset.state = state || '';

    const quizOn = hasQuiz() && !!token && !done && state === 'live' && (!room || admittedNow());
    let enabled = false, hint = '';
    const waitS = Math.ceil((blockedUntil - local) / 1000);
    if (!campaignId || campaignId.includes('{{')) hint = 'This page must be opened through the shop (no campaign id).';
    else if (!campaign) hint = netNote || 'Loading the sale…';
    else if (done && !finalState) hint = 'You already have an order for this sale.';
    else if (inFlight) hint = 'Sending your request…';
    else if (room && queueFinal) hint = 'Your turn to buy has passed.';
    else if (state === 'scheduled') {
      hint = (!room ? 'The button unlocks when the countdown reaches zero.'
        : token ? 'You are in the waiting room. After the start the line moves, and the button unlocks at your turn.'
          : 'Paste your buyer token above to join the waiting line.') +
        (hasQuiz() ? ' You will then type a few characters from a picture.' : '');
    } else if (state === 'sold_out') hint = 'Sold out. Thank you for taking part.';
    else if (state === 'ended') hint = 'This sale has ended.';
    else if (state === 'paused') hint = 'The sale is paused. Please wait.';
    else if (state !== 'live') hint = 'The sale is not open.';
    else if (!token) hint = room ? 'Paste your buyer token above to join the waiting line.' : 'Paste your buyer token above to grab.';
    else if (room && !admittedNow()) {
      hint = queue && queue.state === 'waiting' ? 'Please wait for your turn: the button unlocks by itself.' : 'Getting your place in the line…';
    } else if (!grabPath) hint = prepNote || 'Getting your purchase link…';
    else if (quizOn && !quiz) hint = 'Loading the question…';
    else {
      // Whole seconds left, not counting the 50 ms margin (so a 1 s minimum reads "1 s", never "2 s").
      const quizLeft = quizOn ? quiz.answerableAt - local : 0;
      const quizWaitS = quizLeft > 0 ? Math.max(1, Math.ceil((quizLeft - 50) / 1000)) : 0;
      if (quizWaitS > 0 && quizWaitS >= waitS) hint = 'You can answer in ' + quizWaitS + ' s.';
      else if (waitS > 0) hint = 'You can try again in ' + waitS + ' s.';
      else {
        enabled = true;
        if (quizOn) hint = 'Type the characters shown, then press Grab.';
      }
    }
    el.grab.disabled = !enabled;
    setText(el.grab, inFlight ? 'Sending…' : 'Grab');
    setText(el.hint, hint);
    renderQueue(state);
    renderPay();

    el.quiz.hidden = !quizOn;
    if (quizOn) {
      el.quizLoading.hidden = !!(quiz && el.quizImage.complete && el.quizImage.naturalWidth > 0);
      setText(el.quizLoading, quiz ? 'Loading the picture…' : 'Loading the question…');
      el.quizImage.hidden = !quiz;
      el.answer.disabled = !quiz || inFlight;
      el.quizRefresh.disabled = quizBusy || inFlight;
      setText(el.quizNote, quizNote);
    }
  }
  function tick() { prepareQueue(); prepare(); render(); }

  // ---- 6. grab ------------------------------------------------------------
  function retryAfterMs(headers) {
    const v = headers.get('Retry-After');
    if (!v) return 1000;
    const secs = Number(v);
    if (Number.isFinite(secs)) return Math.max(0, secs) * 1000;
    const at = Date.parse(v);
    return Number.isFinite(at) ? Math.max(0, at - Date.now()) : 1000;
  }
  async function grab() {
    if (inFlight || el.grab.disabled || !token || !grabPath) return;
    const quizOn = hasQuiz();
    let body = '{}';
    if (quizOn) {
      if (!quiz) return;
      const answer = el.answer.value.trim();
      if (!answer) {
        say('Type the characters shown in the picture first.', 'warn');
        el.answer.focus();
        return;
      }
      body = JSON.stringify({ quiz_token: quiz.token, answer });
    }
    inFlight = true;
    quizNote = '';
    const mine = epoch;
    render();
    say('Sending your request…');
    let r;
    try {
      r = await request(grabPath, { method: 'POST', cache: 'no-store',
        headers: Object.assign({ 'Content-Type': 'application/json' }, authHeaders()), body }, 10000);
    } catch (_) { r = null; }
    inFlight = false;
    if (mine !== epoch) { render(); return; }
    // Any answer attempt spends the question, whatever the outcome.
    if (quizOn) dropQuiz();
    handleGrab(r);
    if (quizOn && !done) {
      // The next question arrives about when the buyer may send again, so it does not expire meanwhile.
      quizRetryAt = Math.max(Date.now() + jitter(100, 200), blockedUntil - QUIZ_MIN_MS);
    }
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
    const msg = errorText(code, b, r.status);
    if (code === 'already_bought') { done = true; say(msg, 'info'); return; }
    if (code === 'sold_out' || code === 'ended' || code === 'campaign_stopped' || code === 'paused') {
      if (code === 'paused') { if (campaign) campaign.state = code; } else {
        finalState = code === 'sold_out' ? 'sold_out' : 'ended'; done = true;
      }
      say(msg, code === 'paused' ? 'warn' : 'error');
      return;
    }
    if (code === 'unauthorized' || r.status === 401) { setToken(null); say(msg, 'error'); return; }
    if (code === 'admission_expired') { admissionExpired(); return; }
    if (hasRoom() && (code === 'not_admitted' || code === 'not_found' || code === 'forbidden' || code === 'method_not_allowed')) {
      // The shop did not take this admission's path: the line says where this buyer stands now.
      recheckQueue();
      blockedUntil = Date.now() + jitter(500, 500);
      say(ERROR_TEXT.not_admitted, 'warn');
      return;
    }
    if (code === 'rate_limited' || r.status === 429) {
      blockedUntil = Date.now() + retryAfterMs(r.headers);
    } else if (r.status === 503) {
      if (b.order_id) { startOrder(String(b.order_id)); return; }
      busyStreak = Math.min(busyStreak + 1, 4);
      blockedUntil = Date.now() + jitter(1000 * busyStreak, 1500 * busyStreak);
    } else if (code === 'internal' || r.status >= 500) {
      busyStreak = Math.min(busyStreak + 1, 4);
      blockedUntil = Date.now() + jitter(1500 * busyStreak, 1500 * busyStreak);
    } else if (code === 'not_started') {
      blockedUntil = Date.now() + jitter(500, 700);
      resyncSoon();
      setTimeout(refreshCampaign, jitter(200, 400));
    } else if (code === 'not_found' || code === 'forbidden' || code === 'method_not_allowed') {
      // The grab path was not accepted (a stale or foreign link): fetch it again before the next try.
      grabPath = null;
      pathRetryAt = Date.now() + jitter(200, 400);
      blockedUntil = Date.now() + jitter(500, 500);
    } else if (code === 'too_many_campaigns' || code === 'needs_reconcile') {
      blockedUntil = Date.now() + jitter(5000, 5000);
    } else if (code === 'campaign_not_found') {
      blockedUntil = Date.now() + jitter(5000, 5000);
      setTimeout(refreshCampaign, jitter(200, 400));
    }
    // Every attempt spends the question; the page fetches the next one by itself.
    const next = hasQuiz() && !done && token ? ' A new question is shown above.' : '';
    say(msg + next, r.status >= 500 || r.status === 429 ? 'warn' : 'error');
  }
  el.grab.addEventListener('click', grab);

  // ---- 7. order polling and payment ---------------------------------------
  const FINAL = new Set(['paid', 'expired', 'cancelled']);
  // Order checks after the payment deadline (the shop expires an unpaid order within a moment) before
  // the page calls the order expired by itself: paying would be refused by then anyway.
  const LATE_CHECKS = 8;
  const PAY_ATTEMPTS = 5; // automatic retries of one press while the shop says "not confirmed yet"

  function startOrder(orderId) {
    done = true;
    dropQuiz();
    store.set(orderKey(), orderId);
    showOrder({ order_id: orderId, status: 'queued' }); // the grab's own answer: always shown first
    pollOrder(orderId);
  }
  const againText = () => (finalState ? '' : ' Its unit is back on sale: you may try again while stock lasts.');
  const payOpen = (o) => !!o && o.status === 'confirmed' && (!o.payBy || serverNow() <= o.payBy);
  // Shows an order (the grab's answer, `GET /orders/{id}` or the payment's answer); true once the
  // order will not change any more.
  function showOrder(o) {
    const id = String(o.order_id);
    const same = !!order && order.id === id;
    const status = typeof o.status === 'string' ? o.status : 'unknown';
    if (!same) { deadlineSeen = false; payBlockedUntil = 0; payNote = ''; }
    order = {
      id, status,
      payBy: Number.isFinite(o.pay_by_ms) && o.pay_by_ms > 0 ? o.pay_by_ms : same ? order.payBy : 0,
      priceCents: Number.isInteger(o.price_cents) ? o.price_cents : same ? order.priceCents : null,
    };
    const payBy = order.payBy ? fmtTime(order.payBy) : 'the deadline';
    switch (status) {
      case 'queued': say('Got it! Order ' + id + ' is queued. Waiting for confirmation…', 'success', id); break;
      case 'confirmed':
        if (payOpen(order)) say('You won! Order ' + id + ' is confirmed. Pay by ' + payBy + '.', 'success', id);
        else say('Order ' + id + ': the time to pay is over. Checking with the shop…', 'warn', id);
        break;
      case 'paid': say('Paid! Order ' + id + ' is paid. Enjoy!', 'success', id); break;
      case 'cancelled': say('Order ' + id + ' was cancelled.' + againText(), 'error', id); break;
      case 'expired': say('Order ' + id + ' expired: it was not paid in time.' + againText(), 'error', id); break;
      default: say('Order ' + id + ': ' + status, 'info', id);
    }
    if (FINAL.has(status)) payNote = '';
    // The unit of an expired or cancelled order goes back on sale, and its buyer may grab again.
    if (status === 'expired' || status === 'cancelled') {
      if (store.get(orderKey()) === id) store.del(orderKey());
      if (!finalState) done = false;
    }
    render();
    return status !== 'queued' && status !== 'confirmed';
  }
  // A wait of the poll loop that `wakePoll()` cuts short.
  const napPoll = (ms) => new Promise((resolve) => {
    const wake = () => { clearTimeout(timer); if (wakePoll === wake) wakePoll = null; resolve(); };
    const timer = setTimeout(wake, ms);
    wakePoll = wake;
  });
  // Next wait: about 1 s while queued; once confirmed, slowly (the page counts the time to pay down by
  // itself) until just after the deadline, then a few quick checks for the shop's verdict.
  function pollDelay(late) {
    if (!order || order.status !== 'confirmed') return jitter(800, 400);
    const left = order.payBy ? order.payBy - serverNow() : Infinity;
    if (left >= 0) return Math.min(document.hidden ? jitter(20000, 10000) : jitter(8000, 4000), left + jitter(300, 300));
    return jitter(400, 300) * Math.min(late + 1, 3);
  }
  // Follows one order until it is paid, expired or cancelled. Bounded: `tries` checks while queued,
  // 400 while confirmed (a deadline always ends those sooner), LATE_CHECKS after the deadline.
  async function pollOrder(orderId, tries = 60, firstMs = jitter(300, 400)) {
    if (pollingId === orderId) return;
    const gen = ++pollGen;
    pollingId = orderId;
    el.check.hidden = true;
    let queuedLeft = tries, confirmedLeft = 400, late = 0, final = false, stop = false;
    for (let i = 0; ; i++) {
      await napPoll(i === 0 ? firstMs : pollDelay(late));
      if (gen !== pollGen || !token) { stop = true; break; }
      const mine = order && order.id === orderId ? order : null;
      if (mine && FINAL.has(mine.status)) { final = true; break; } // settled meanwhile (the payment's answer)
      if (mine && mine.status === 'confirmed') {
        if (mine.payBy && serverNow() > mine.payBy) late++; else confirmedLeft--;
      } else queuedLeft--;
      try {
        const r = await api('/orders/' + encodeURIComponent(orderId), { headers: authHeaders(), cache: 'no-store' }, 5000);
        if (gen !== pollGen) { stop = true; break; }
        if (r.status === 200) final = showOrder(r.body);
        else if (r.status === 401) { stop = true; setToken(null); say(ERROR_TEXT.unauthorized, 'error'); }
        else if (r.status === 403) { stop = true; say('This order belongs to another buyer.', 'error'); }
        // 404 (not written yet), 429, 5xx: keep waiting within the bound
      } catch (_) { /* network blip: next try */ }
      if (final || stop) break;
      const cur = order && order.id === orderId ? order : null;
      if (cur && cur.status === 'confirmed' && late >= LATE_CHECKS) {
        // The shop still says confirmed well after the deadline; it refuses payment by now.
        final = showOrder({ order_id: orderId, status: 'expired' });
        break;
      }
      if (queuedLeft <= 0 || confirmedLeft <= 0) break;
    }
    if (gen !== pollGen) return;
    pollingId = null;
    if (!final && !stop && token) {
      el.check.hidden = false;
      if (!order || order.id !== orderId || order.status === 'queued') {
        say('Order ' + orderId + ' is still being processed. Check again in a little while.', 'warn', orderId);
      }
    }
  }
  function resumeOrder() {
    const id = token && store.get(orderKey());
    if (id) { done = true; pollOrder(id, 20, jitter(0, 300)); render(); }
  }
  el.check.addEventListener('click', () => {
    const id = token && store.get(orderKey());
    if (id) pollOrder(id, 30, 0);
  });

  // `POST /orders/{id}/pay`: idempotent, so a press after an unclear outcome is safe.
  async function pay() {
    const o = order;
    if (!o || paying || !token || !payOpen(o) || Date.now() < payBlockedUntil) return;
    const id = o.id, mine = epoch;
    paying = true;
    payNote = '';
    render();
    let r = null;
    for (let attempt = 1; attempt <= PAY_ATTEMPTS; attempt++) {
      try {
        r = await api('/orders/' + encodeURIComponent(id) + '/pay', { method: 'POST', cache: 'no-store',
          headers: Object.assign({ 'Content-Type': 'application/json' }, authHeaders()), body: '{}' }, 10000);
      } catch (_) { r = null; }
      if (mine !== epoch || !order || order.id !== id) { paying = false; render(); return; }
      // Still being written (another gateway may know more): the press stands, try again shortly.
      if (!r || r.body.code !== 'order_not_confirmed' || attempt === PAY_ATTEMPTS || !payOpen(order)) break;
      payNote = ERROR_TEXT.order_not_confirmed; payNoteKind = 'warn';
      render();
      await sleep(Math.min(retryAfterMs(r.headers), 5000) + jitter(0, 300));
      if (mine !== epoch || !order || order.id !== id) { paying = false; render(); return; }
    }
    paying = false;
    handlePay(id, r);
    render();
  }
  function handlePay(id, r) {
    const note = (text, kind, blockMs) => {
      payNote = text; payNoteKind = kind;
      payBlockedUntil = Date.now() + blockMs;
      if (pollingId !== id) pollOrder(id, 10, jitter(300, 300)); else if (wakePoll) wakePoll();
    };
    if (!r) {
      note('Network problem: we could not tell whether your payment went through. Checking your order… ' +
        'Paying again is safe: an order is paid at most once.', 'warn', jitter(1500, 1000));
      return;
    }
    const b = r.body, code = b.code || '';
    if (r.status === 200 && typeof b.status === 'string') { showOrder(Object.assign({ order_id: id }, b)); return; }
    if (code === 'order_expired') { showOrder({ order_id: id, status: 'expired' }); return; }
    if (code === 'order_cancelled') { showOrder({ order_id: id, status: 'cancelled' }); return; }
    if (code === 'unauthorized' || r.status === 401) { setToken(null); say(ERROR_TEXT.unauthorized, 'error'); return; }
    if (code === 'order_not_confirmed') { note(ERROR_TEXT.order_not_confirmed, 'warn', retryAfterMs(r.headers)); return; }
    if (code === 'rate_limited' || r.status === 429) { note(ERROR_TEXT.rate_limited, 'warn', retryAfterMs(r.headers)); return; }
    if (code === 'order_not_found' || r.status === 404) {
      note(ERROR_TEXT.order_not_found + ' Please try again in a moment.', 'error', jitter(2000, 1000));
      return;
    }
    const again = r.status >= 500 ? ' Paying again is safe: an order is paid at most once.' : '';
    note(errorText(code, b, r.status) + again, r.status >= 500 ? 'warn' : 'error', jitter(1500, 1500));
  }
  el.payButton.addEventListener('click', pay);

  function fmtLeft(ms) {
    const t = Math.max(0, Math.ceil(ms / 1000));
    const h = Math.floor(t / 3600), m = Math.floor(t / 60) % 60, s = t % 60;
    return (h ? h + ':' + String(m).padStart(2, '0') : String(m)) + ':' + String(s).padStart(2, '0');
  }
  // The Pay block: shown while the order is confirmed and the synced clock is before pay_by_ms.
  function renderPay() {
    const o = token ? order : null;
    if (o && o.status === 'confirmed' && !payOpen(o) && !deadlineSeen) {
      // The time is up by the shop's clock: say so, and have the shop's verdict fetched.
      deadlineSeen = true;
      say('Order ' + o.id + ': the time to pay is over. Checking with the shop…', 'warn', o.id);
      if (pollingId !== o.id) pollOrder(o.id, 5, jitter(300, 300));
    }
    const show = payOpen(o);
    el.pay.hidden = !show;
    if (!show) return;
    if (o.payBy) {
      setText(el.payCountdown, fmtLeft(o.payBy - serverNow()));
      const iso = new Date(o.payBy).toISOString();
      if (el.payCountdown.getAttribute('datetime') !== iso) el.payCountdown.setAttribute('datetime', iso);
    } else setText(el.payCountdown, '–');
    const cents = Number.isInteger(o.priceCents) ? o.priceCents : campaign && Number.isInteger(campaign.price_cents) ? campaign.price_cents : null;
    setText(el.payButton, paying ? 'Paying…' : cents == null ? 'Pay now' : 'Pay ' + fmtCents(cents));
    const waitS = Math.ceil((payBlockedUntil - Date.now()) / 1000);
    el.payButton.disabled = paying || waitS > 0;
    const text = payNote + (waitS > 0 && !paying ? (payNote ? ' ' : '') + 'You can pay again in ' + waitS + ' s.' : '');
    setText(el.payNote, text);
    if (payNoteKind) el.payNote.dataset.kind = payNoteKind; else delete el.payNote.dataset.kind;
  }

  // ---- start ----------------------------------------------------------------
  document.addEventListener('visibilitychange', () => {
    if (document.hidden) return;
    // Back in view: the place in line is checked soon (not sooner than a backoff or Retry-After asked).
    if (!queueStreak && queue && queue.state === 'waiting') queueAt = Math.min(queueAt, Date.now() + jitter(0, 500));
    syncClock(2).then(refreshCampaign); renderAccount(); tick();
  });
  setToken(tokenFromFragment() || store.get(TOKEN_KEY));
  if (!campaignId || campaignId.includes('{{')) { render(); return; }
  resumeOrder();
  syncClock(3).then(() => { renderAccount(); campaignLoop(); });
  setInterval(tick, 100);
  setInterval(() => syncClock(3), 60000);
})();

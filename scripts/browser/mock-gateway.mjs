// A stand-in for the gateway's buyer funnel (API.md, "Version 1.1 additions"), for checking the buyer
// page and buyer-quiz.mjs without building the server: serves static-cdn/ the way the gateway does
// (rendered item page, assets, CSP `default-src 'self'`), the clock, one campaign, grab-path (425
// before the start, then a per-buyer secret path), the quiz (single-use tokens, 1 s minimum, 60 s
// expiry, PNG pictures under /static/quiz/), grabs on that path only, orders (queued, confirmed
// `confirmAfterMs` later, expired 250 ms after `pay_by_ms` when unpaid, as the server's sweeper does),
// the mock payment (`POST /api/v1/orders/{id}/pay`: 200 paid, idempotent; 409 order_not_confirmed
// with Retry-After, order_expired, order_cancelled), and the admin quiz-answers export. Buyer tokens
// are unsigned JWTs here: only `sub` is read.
//
//   node mock-gateway.mjs [--port 0] [--start-in-ms 2000] [--quiz true] [--fail-first N] [--pay-window-ms 900000]
//        [--room false] [--admit-per-s 2] [--room-ahead 10]
//
// prints `mock gateway listening on http://127.0.0.1:<port>` and serves until killed.
// `timeAheadMs` (option) makes /api/v1/time run ahead of the sale's own clock, so a page asks too early
// and meets 425 not_started. `--fail-first N` refuses the first N correct answers with 403 quiz_failed ("wrong"), to exercise
// the page's fresh-question path. `notConfirmedFirst: N` answers the first N payments 409
// order_not_confirmed (Retry-After: 1) whatever the order's status, as a gateway that has not heard
// of the confirmation yet would; `payFailFirst: N` answers the first N payments 503 overloaded. The
// returned `setStatus(orderId, status)` changes an order behind the page's back (the sweeper expiring
// it early, the shop cancelling it). Also importable: `startMock(options)` returns { url, close, state }.
//
// The waiting room (option `room: {...}`, README "The waiting room"): the campaign says
// `waiting_room: true`; `POST .../queue` joins (pre-queued before the start, ranked by a random draw
// at the start, first come first served after it; the same place on a rejoin), `GET .../queue` with
// `X-Queue-Ticket` polls (a pre-queue ticket polled after the start gets its ranked `ticket` to keep);
// the cursor admits `admitPerS` ranks a second from the start; an admission lapses `admitTtlMs`
// after it was first seen unused (410 admission_expired). `ahead: N` puts N made-up buyers ahead of
// every real one, so positions count down. Grabs only on the admission's path
// (`.../grab/r<rank>.<secret>`), grab-path and any other path answer 403 not_admitted, and so does the
// quiz before the admission. Faults: `failPolls: N` (the first N polls 503 unavailable, Retry-After
// 1), `queueFullJoins: N` (503 queue_full), `resetAtPoll: N` (the N-th poll finds the queue reset:
// 409 queue_reset); `room.soldOut = true` on the returned `room` says sold out to everyone still
// without an order, and `room.setRate(n)` changes the rate. The operators' side: the live dashboard
// (`/admin/dashboard`, its assets), `GET /admin/v1/campaigns`, `.../stats` (with `waiting_room`),
// `GET /admin/v1/hot` and `POST /admin/v1/campaigns/{id}/waiting-room`, with the admin token
// `MOCK_ADMIN_TOKEN`.
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { deflateSync } from 'node:zlib';

const here = dirname(fileURLToPath(import.meta.url));
const cdn = join(here, '..', '..', 'static-cdn');
export const MOCK_ADMIN_TOKEN = 'mock-admin-token';

// ---- a tiny PNG encoder (RGB, no filter), for the quiz pictures ------------------------------------
const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
const crc32 = (buf) => {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
};
function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}
export function png(width, height, pixel) {
  const raw = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    raw[y * (width * 3 + 1)] = 0;
    for (let x = 0; x < width; x++) {
      const [r, g, b] = pixel(x, y);
      const o = y * (width * 3 + 1) + 1 + x * 3;
      raw[o] = r; raw[o + 1] = g; raw[o + 2] = b;
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; ihdr[9] = 2; ihdr[10] = 0; ihdr[11] = 0; ihdr[12] = 0;
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}
// Bars whose widths follow the answer's characters: not readable, only distinct per question.
function quizPicture(answer) {
  const codes = [...answer].map((c) => c.charCodeAt(0));
  return png(220, 120, (x, y) => {
    const c = codes[Math.floor(x / (220 / codes.length))] || 0;
    const on = ((x + y * (c % 7)) % (c % 11 + 5)) < 3;
    return on ? [40 + (c * 3) % 120, 40, 90] : [250, 250, 245];
  });
}

function sendJson(res, status, body, headers = {}) {
  res.writeHead(status, Object.assign({ 'Content-Type': 'application/json', 'Cache-Control': 'no-store' }, headers));
  res.end(JSON.stringify(body));
}
const err = (res, status, code, message, headers) => sendJson(res, status, { code, message }, headers);
const page = (res, type, body) => {
  res.writeHead(200, { 'Content-Type': type, 'Cache-Control': 'public, max-age=60',
    'Content-Security-Policy': "default-src 'self'", 'X-Content-Type-Options': 'nosniff' });
  res.end(body);
};
function subOf(req) {
  const m = /^Bearer (\S+)$/.exec(req.headers.authorization || '');
  if (!m) return null;
  try {
    const p = JSON.parse(Buffer.from(m[1].split('.')[1], 'base64url').toString('utf8'));
    return typeof p.sub === 'string' && p.sub ? p.sub : null;
  } catch (_) { return null; }
}
export function buyerToken(sub) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return b64({ alg: 'none', typ: 'JWT' }) + '.' + b64({ sub, exp: Math.floor(Date.now() / 1000) + 3600 }) + '.mock';
}
async function readBody(req, limit = 4096) {
  let size = 0;
  const parts = [];
  for await (const p of req) {
    size += p.length;
    if (size > limit) return null;
    parts.push(p);
  }
  return Buffer.concat(parts).toString('utf8');
}

// ---- the waiting room (option `room`) --------------------------------------------------------------
// One room for the mock's one campaign: ranks are 1-based; the cursor admits ranks 1..floor(cursor).
function makeRoom(opt, { now, campaign, started, hasOrder, orders, secrets, state }) {
  const cfg = { admit_per_s: opt.admitPerS || 2, admitted_max: opt.admittedMax || 10000,
    admit_ttl_s: Math.max(1, Math.round((opt.admitTtlMs || 120000) / 1000)), stock_factor_pct: 100,
    queue_max: opt.queueMax || 2000000 };
  const ttlMs = opt.admitTtlMs || 120000;
  const pollAfterMs = opt.pollAfterMs || 500;
  const ahead = opt.ahead || 0; // made-up buyers drawn ahead of every real one
  const faults = { failPolls: opt.failPolls || 0, queueFullJoins: opt.queueFullJoins || 0, resetAtPoll: opt.resetAtPoll || 0 };
  let epoch = 1, sealed = false, next = 1, cursor = 0, lastT = 0, polls = 0;
  let pre = new Map(); // sub -> draw, before the start
  let ranks = new Map(); // sub -> rank
  let seenAdmitted = new Map(); // rank -> ms the admission was first seen
  const estimates = new Map(); // rank -> { joined, eta_s } for the accuracy numbers
  const accuracy = { samples: 0, within: 0, errSum: 0 };
  const r = { cfg, soldOut: false, get epoch() { return epoch; }, ranks: () => ranks };

  function seal() {
    if (sealed || !started()) return;
    sealed = true;
    next = ahead + 1;
    for (const [sub] of [...pre.entries()].sort((a, b) => a[1] - b[1])) ranks.set(sub, next++);
  }
  // The cursor moves at the rate from the start, never past the last rank given.
  function advance() {
    seal();
    const t = now();
    if (!started()) return;
    if (!lastT) lastT = campaign.starts_at_ms;
    cursor = Math.min(cursor + ((t - lastT) / 1000) * cfg.admit_per_s, next - 1);
    lastT = t;
  }
  const admittedCount = () => Math.floor(cursor);
  const soldOutNow = () => r.soldOut || orders.size >= campaign.stock_total;
  const lapsed = (rank, sub) => seenAdmitted.has(rank) && now() > seenAdmitted.get(rank) + ttlMs && !hasOrder(sub);
  const grabPathOf = (sub, rank) => {
    if (!secrets.has(sub)) secrets.set(sub, randomBytes(12).toString('hex'));
    return '/api/v1/campaigns/' + campaign.id + '/grab/r' + rank + '.' + secrets.get(sub);
  };
  const ticketOf = (sub) => 'mq1.' + epoch + '.' + (ranks.has(sub) ? 'r' + ranks.get(sub) : 'p') + '.' + sub;
  r.setRate = (n) => { advance(); cfg.admit_per_s = n; };
  r.reset = () => {
    advance();
    epoch++; pre = new Map(); ranks = new Map(); seenAdmitted = new Map();
    next = admittedCount() + 1;
  };
  r.admitted = (sub) => {
    advance();
    const rank = ranks.get(sub);
    return !!rank && rank <= admittedCount() && !lapsed(rank, sub);
  };

  // Where `sub` stands; `t` is the parsed ticket.
  function answer(res, sub, t, extra = {}) {
    advance();
    const out = Object.assign({ state: 'waiting', position: 0, eta_s: 0, phase: 'queue', approximate: true,
      as_of_ms: now(), starts_at_ms: campaign.starts_at_ms, queued: Math.max(0, next - 1),
      admit_per_s: cfg.admit_per_s, poll_after_ms: pollAfterMs }, extra);
    let rank = t.rank;
    if (!rank && !sealed) {
      if (!pre.has(sub)) return err(res, 409, 'queue_reset', 'the queue does not know this ticket (its store restarted); join again');
      out.phase = 'pre_queue';
      out.queued = ahead + pre.size;
      if (soldOutNow()) { out.state = 'sold_out'; return sendJson(res, 200, out); }
      const draw = pre.get(sub);
      out.position = ahead + 1 + [...pre.values()].filter((d) => d < draw).length;
      const untilStart = Math.max(0, campaign.starts_at_ms - now());
      out.eta_s = Math.ceil(untilStart / 1000) + Math.ceil(out.position / cfg.admit_per_s);
      out.poll_after_ms = Math.min(10000, Math.max(1000, untilStart - 5000));
      return sendJson(res, 200, out);
    }
    if (!rank) {
      rank = ranks.get(sub);
      if (!rank) return err(res, 409, 'queue_reset', 'the queue does not know this ticket (its store restarted); join again');
      out.ticket = ticketOf(sub);
    }
    out.approximate = false;
    if (soldOutNow() && !hasOrder(sub)) { out.state = 'sold_out'; return sendJson(res, 200, out); }
    if (rank <= admittedCount()) {
      if (!seenAdmitted.has(rank)) {
        seenAdmitted.set(rank, now());
        const e = estimates.get(rank);
        if (e) {
          const waited = (now() - e.joined) / 1000, error = Math.abs(waited - e.eta_s);
          accuracy.samples++;
          if (error <= Math.max(0.3 * e.eta_s, 2)) accuracy.within++;
          accuracy.errSum += (100 * error) / Math.max(1, e.eta_s);
        }
      }
      if (lapsed(rank, sub)) return err(res, 410, 'admission_expired', 'your admission lapsed unused; your place in this sale is spent');
      out.state = 'admitted';
      out.grab_path = grabPathOf(sub, rank);
      out.admitted_until_ms = seenAdmitted.get(rank) + ttlMs;
      return sendJson(res, 200, out);
    }
    out.position = rank - admittedCount();
    out.eta_s = Math.ceil(out.position / cfg.admit_per_s);
    out.approximate = true;
    return sendJson(res, 200, out);
  }

  r.join = (res, sub) => {
    state.joins.push({ sub, at: now() });
    if (faults.queueFullJoins > 0) {
      faults.queueFullJoins--;
      return err(res, 503, 'queue_full', 'the queue for this sale is full; try again shortly', { 'Retry-After': '1' });
    }
    advance();
    if (!sealed) {
      if (!pre.has(sub)) pre.set(sub, Math.random());
    } else if (!ranks.has(sub)) {
      ranks.set(sub, next++);
      estimates.set(ranks.get(sub), { joined: now(), eta_s: Math.ceil((ranks.get(sub) - admittedCount()) / cfg.admit_per_s) });
    }
    return answer(res, sub, { rank: ranks.get(sub) || 0 }, { ticket: ticketOf(sub) });
  };
  r.poll = (res, sub, ticket) => {
    state.polls.push({ sub, ticket: ticket || null, at: now() });
    if (faults.failPolls > 0) {
      faults.failPolls--;
      return err(res, 503, 'unavailable', 'this gateway has not read the waiting room yet; try again shortly', { 'Retry-After': '1' });
    }
    if (!ticket) return err(res, 400, 'bad_request', 'send the ticket of your join in the X-Queue-Ticket header');
    const m = /^mq1\.(\d+)\.(p|r(\d+))\.(.+)$/.exec(ticket);
    if (!m || m[4] !== sub) return err(res, 403, 'bad_ticket', 'this queue ticket is not yours for this sale; join with POST .../queue');
    polls++;
    if (faults.resetAtPoll && polls === faults.resetAtPoll) r.reset();
    if (Number(m[1]) !== epoch) return err(res, 409, 'queue_reset', 'the queue was reset (its store restarted); join again with POST .../queue');
    return answer(res, sub, { rank: m[3] ? Number(m[3]) : 0 });
  };
  // A grab on a room campaign: [status, code, message] when refused.
  r.checkGrab = (sub, key) => {
    advance();
    const rank = ranks.get(sub);
    const m = /^r(\d+)\.([0-9a-f]+)$/.exec(key || '');
    if (!m || !rank || Number(m[1]) !== rank || m[2] !== secrets.get(sub) || rank > admittedCount()) {
      return [403, 'not_admitted', 'this sale has a waiting room: join with POST .../queue and grab on the path your admission gives'];
    }
    if (lapsed(rank, sub)) return [410, 'admission_expired', 'your admission lapsed unused'];
    if (soldOutNow()) return [410, 'sold_out', 'no unit left'];
    return null;
  };
  r.stats = () => {
    advance();
    const admitted = admittedCount();
    const real = [...ranks.entries()].filter(([, rank]) => rank <= admitted);
    const abandoned = real.filter(([sub, rank]) => lapsed(rank, sub)).length;
    const active = real.filter(([sub, rank]) => !hasOrder(sub) && !lapsed(rank, sub)).length;
    const queued = Math.max(0, next - 1, ahead + pre.size);
    const left = campaign.stock_total - orders.size;
    return {
      settings: Object.assign({}, cfg), pre_queued: ahead + pre.size, queued, waiting: Math.max(0, queued - admitted),
      admitted, admitted_per_s: started() && admitted < next - 1 ? cfg.admit_per_s : 0, active,
      capacity: Math.max(0, Math.min(cfg.admitted_max, Math.floor((left * cfg.stock_factor_pct) / 100))),
      abandoned, blocked: false, queue_sold_out: soldOutNow(),
      eta_accuracy: { samples: accuracy.samples, within_30pct: accuracy.within,
        mean_abs_error_pct: accuracy.samples ? Math.round((accuracy.errSum / accuracy.samples) * 10) / 10 : 0 },
      as_of_ms: now(),
    };
  };
  return r;
}

export function startMock({ port = 0, startInMs = 2000, quiz = true, failFirst = 0, id = 'mock-item',
  bankSize = 16, minMs = 1000, ttlMs = 60000, timeAheadMs = 0, payWindowMs = 900000, confirmAfterMs = 600,
  notConfirmedFirst = 0, payFailFirst = 0, stockTotal = 5, room = null } = {}) {
  const now = () => Date.now();
  const campaign = { id, title: 'Mock phone <b>X</b>', price_cents: 19999, stock_total: stockTotal,
    starts_at_ms: now() + startInMs, ends_at_ms: now() + 3600000, quiz, hidden_path: true };
  const bank = Array.from({ length: bankSize }, () => {
    const answer = randomBytes(4).toString('hex').toUpperCase().slice(0, 5).replace(/0/g, 'K').replace(/1/g, 'M');
    return { answer, file: randomBytes(16).toString('hex') + '.png' };
  });
  const byFile = new Map(bank.map((q) => [q.file, q]));
  const issued = new Map(); // quiz token -> { sub, q, at, used }
  const secrets = new Map(); // sub -> secret path segment
  const orders = new Map(); // order id -> order
  const state = { failFirst, notConfirmedFirst, payFailFirst, grabs: [], quizAsks: 0, pathAsks: 0, pays: [],
    joins: [], polls: [], quizNotAdmitted: 0, roomSettings: [] };
  // The sweeper: an unpaid confirmed order expires 250 ms after its deadline (checked when read).
  const settle = (o) => {
    if (o.status === 'confirmed' && now() > o.pay_by_ms + 250) o.status = 'expired';
    return o;
  };
  const started = () => now() >= campaign.starts_at_ms;
  const hasOrder = (sub) => [...orders.values()].some((o) => o.user_id === sub && o.status !== 'expired' && o.status !== 'cancelled');
  const rm = room ? makeRoom(room, { now, campaign, started, hasOrder, orders, secrets, state }) : null;
  const template = readFileSync(join(cdn, 'item.html'), 'utf8');
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

  // The operators' side, for the live dashboard: its page and assets, the campaign list, stats (with the
  // waiting room's numbers), hot items, and the waiting room's settings.
  const adminFiles = {
    'dashboard.js': ['admin/dashboard.js', 'text/javascript; charset=utf-8'],
    'dashboard.css': ['admin/dashboard.css', 'text/css; charset=utf-8'],
    'uPlot.iife.min.js': ['admin/vendor/uPlot.iife.min.js', 'text/javascript; charset=utf-8'],
    'uPlot.min.css': ['admin/vendor/uPlot.min.css', 'text/css; charset=utf-8'],
  };
  const liveState = () => (!started() ? 'scheduled' : orders.size >= campaign.stock_total ? 'sold_out' : 'live');
  const adminView = () => ({ id, title: campaign.title, state: liveState(), stock_total: campaign.stock_total,
    starts_at_ms: campaign.starts_at_ms, ends_at_ms: campaign.ends_at_ms, quiz, waiting_room: !!rm,
    waiting_room_settings: rm ? Object.assign({}, rm.cfg) : null });
  async function admin(req, res, p) {
    if (req.method === 'GET' && p === '/admin/dashboard') return page(res, 'text/html; charset=utf-8', readFileSync(join(cdn, 'admin', 'index.html')));
    if (req.method === 'GET' && p.startsWith('/admin/static/')) {
      const f = adminFiles[p.slice('/admin/static/'.length)];
      if (!f) return err(res, 404, 'not_found', 'no such asset');
      return page(res, f[1], readFileSync(join(cdn, f[0])));
    }
    if (req.headers.authorization !== 'Bearer ' + MOCK_ADMIN_TOKEN) {
      return err(res, 401, 'unauthorized', 'missing or invalid admin token', { 'WWW-Authenticate': 'Bearer' });
    }
    const cpa = '/admin/v1/campaigns/' + id;
    if (req.method === 'GET' && p === '/admin/v1/campaigns') return sendJson(res, 200, [adminView()]);
    if (req.method === 'GET' && p === '/admin/v1/hot') return sendJson(res, 200, { window_ms: 10000, items: [] });
    if (req.method === 'GET' && p === cpa + '/stats') {
      const all = [...orders.values()];
      const count = (st) => all.filter((o) => o.status === st).length;
      const sold = all.length;
      return sendJson(res, 200, Object.assign({ campaign_id: id, state: liveState(), stock_total: campaign.stock_total,
        sold, remaining: campaign.stock_total - sold, reserved: 0, orders_queued: 0, orders_persisted: sold,
        orders_paid: count('paid'), orders_expired: count('expired'), units_returned: 0, rejected: {},
        requests_per_s: 0 }, rm ? { waiting_room: rm.stats() } : {}));
    }
    if (req.method === 'POST' && p === cpa + '/waiting-room') {
      let body;
      try { body = JSON.parse((await readBody(req)) || 'null'); } catch (_) { body = null; }
      if (!body || typeof body !== 'object' || Array.isArray(body)) return err(res, 400, 'bad_request', 'body is not a JSON object');
      if (!rm) return err(res, 409, 'no_waiting_room', 'this sale has no waiting room (it is chosen at creation)');
      const ranges = { admit_per_s: [1, 100000], admitted_max: [1, 1000000], admit_ttl_s: [5, 3600],
        stock_factor_pct: [100, 1000], queue_max: [1, 10000000] };
      const keys = Object.keys(body);
      if (!keys.length) return err(res, 400, 'bad_request', 'send at least one of admit_per_s, admitted_max, admit_ttl_s, stock_factor_pct, queue_max');
      for (const k of keys) {
        const r = ranges[k];
        if (!r) return err(res, 400, 'bad_request', 'unknown field ' + k);
        if (!Number.isInteger(body[k]) || body[k] < r[0] || body[k] > r[1]) return err(res, 400, 'bad_request', k + ' is out of range (see the API document)');
      }
      state.roomSettings.push(body);
      if (body.admit_per_s !== undefined) rm.setRate(body.admit_per_s);
      for (const k of keys) if (k !== 'admit_per_s') rm.cfg[k] = body[k];
      return sendJson(res, 200, adminView());
    }
    return err(res, 404, 'not_found', 'no such endpoint');
  }

  const server = createServer(async (req, res) => {
    const url = new URL(req.url, 'http://x');
    const p = url.pathname;
    const cp = '/api/v1/campaigns/' + id;
    try {
      if (req.method === 'GET' && p === '/items/' + id + '.html') {
        return page(res, 'text/html; charset=utf-8', template.replace('{{campaign_id}}', esc(id))
          .replaceAll('{{title}}', esc(campaign.title)).replace('{{price}}', '199.99').replace('{{stock_total}}', '5'));
      }
      if (req.method === 'GET' && p === '/static/app.js') return page(res, 'text/javascript; charset=utf-8', readFileSync(join(cdn, 'app.js')));
      if (req.method === 'GET' && p === '/static/style.css') return page(res, 'text/css; charset=utf-8', readFileSync(join(cdn, 'style.css')));
      if (req.method === 'GET' && p.startsWith('/static/quiz/')) {
        const q = byFile.get(p.slice('/static/quiz/'.length));
        if (!q) return err(res, 404, 'not_found', 'no such asset');
        res.writeHead(200, { 'Content-Type': 'image/png', 'Cache-Control': 'public, max-age=3600' });
        return res.end(quizPicture(q.answer));
      }
      if (p === '/favicon.ico') { res.writeHead(204); return res.end(); }
      if (req.method === 'GET' && p === '/api/v1/time') return sendJson(res, 200, { now_ms: now() + timeAheadMs });
      if (req.method === 'GET' && p === cp) {
        const sold = orders.size;
        return sendJson(res, 200, Object.assign({}, campaign, {
          state: !started() ? 'scheduled' : sold >= campaign.stock_total ? 'sold_out' : 'live',
          remaining_hint: campaign.stock_total - sold, waiting_room: !!rm },
        rm ? { admit_per_s: rm.cfg.admit_per_s } : {}), { 'Cache-Control': 'public, max-age=1' });
      }
      if (p === '/admin/dashboard' || p.startsWith('/admin/static/') || (p.startsWith('/admin/v1/') && !p.endsWith('/quiz-answers') && !p.endsWith('/orders'))) {
        return admin(req, res, p);
      }
      if (req.method === 'GET' && p === '/admin/v1/campaigns/' + id + '/quiz-answers') {
        return sendJson(res, 200, { answers: Object.fromEntries(bank.map((q) => ['/static/quiz/' + q.file, q.answer])) });
      }
      const sub = subOf(req);
      if (p === cp + '/queue' && (req.method === 'POST' || req.method === 'GET')) {
        if (!rm) return err(res, 409, 'no_waiting_room', 'this sale has no waiting room; GET .../grab-path and grab');
        if (!sub) return err(res, 401, 'unauthorized', 'missing or invalid buyer token', { 'WWW-Authenticate': 'Bearer' });
        if (req.method === 'POST') {
          await readBody(req);
          return rm.join(res, sub);
        }
        return rm.poll(res, sub, req.headers['x-queue-ticket']);
      }
      if (req.method === 'GET' && p === cp + '/grab-path') {
        state.pathAsks++;
        if (!sub) return err(res, 401, 'unauthorized', 'missing or invalid buyer token', { 'WWW-Authenticate': 'Bearer' });
        if (rm) return err(res, 403, 'not_admitted', 'this sale has a waiting room: join with POST .../queue; your admission gives your grab path');
        if (!started()) return err(res, 425, 'not_started', 'the sale has not started yet');
        if (!secrets.has(sub)) secrets.set(sub, randomBytes(12).toString('hex'));
        return sendJson(res, 200, { grab_path: cp + '/g/' + secrets.get(sub) + '/grab' });
      }
      if (req.method === 'GET' && p === cp + '/quiz') {
        state.quizAsks++;
        if (!sub) return err(res, 401, 'unauthorized', 'missing or invalid buyer token', { 'WWW-Authenticate': 'Bearer' });
        if (!quiz) return err(res, 404, 'not_found', 'this sale has no quiz');
        if (!started()) return err(res, 425, 'not_started', 'the sale has not started yet');
        if (rm && !rm.admitted(sub)) {
          state.quizNotAdmitted++;
          return err(res, 403, 'not_admitted', 'not admitted from the waiting room (yet)');
        }
        const q = bank[Math.floor(Math.random() * bank.length)];
        const token = randomBytes(16).toString('hex');
        issued.set(token, { sub, q, at: now(), used: false });
        return sendJson(res, 200, { quiz_token: token, image_url: '/static/quiz/' + q.file, min_answer_ms: minMs, expires_in_ms: ttlMs });
      }
      const g = /^\/api\/v1\/campaigns\/([^/]+)\/(?:g\/([^/]+)\/)?grab(?:\/(r\d+\.[0-9a-f]+))?$/.exec(p);
      if (g) {
        if (req.method !== 'POST') return err(res, 405, 'method_not_allowed', 'use POST');
        if (g[1] !== id) return err(res, 404, 'campaign_not_found', 'no campaign has this id');
        if (!started()) return err(res, 425, 'not_started', 'the sale has not started yet');
        if (!sub) return err(res, 401, 'unauthorized', 'missing or invalid buyer token', { 'WWW-Authenticate': 'Bearer' });
        if (rm) {
          // Only the admission's own path, while admitted (before the body, as the gateway's funnel).
          const refusal = rm.checkGrab(sub, g[3]);
          if (refusal) { state.grabs.push({ sub, path: p, body: null, refused: refusal[1] }); return err(res, ...refusal); }
        } else if (g[3]) return err(res, 404, 'not_found', 'no such endpoint');
        const raw = await readBody(req);
        if (raw === null) return err(res, 413, 'payload_too_large', 'request body is larger than 4096 bytes');
        let body;
        try { body = raw ? JSON.parse(raw) : {}; } catch (_) { return err(res, 400, 'bad_request', 'body is not JSON'); }
        state.grabs.push({ sub, path: p, body });
        if (!rm && (!g[2] || g[2] !== secrets.get(sub))) return err(res, 404, 'not_found', 'no such endpoint');
        if (quiz) {
          const t = issued.get(body.quiz_token);
          if (!t || t.sub !== sub) return err(res, 403, 'quiz_failed', 'the quiz token is not valid for this buyer and sale');
          if (t.used) return err(res, 403, 'quiz_failed', 'the quiz token was already used; fetch a new question');
          t.used = true;
          const age = now() - t.at;
          if (age < minMs) return err(res, 403, 'quiz_failed', 'answered too fast: wait ' + (minMs - age) + ' ms more before sending the answer');
          if (age > ttlMs) return err(res, 403, 'quiz_failed', 'the quiz token has expired; fetch a new question');
          const right = typeof body.answer === 'string' && body.answer.trim().toUpperCase() === t.q.answer;
          if (!right || state.failFirst > 0) {
            if (right) state.failFirst--;
            return err(res, 403, 'quiz_failed', 'the answer is wrong; fetch a new question');
          }
        }
        for (const o of orders.values()) if (o.user_id === sub) return err(res, 409, 'already_bought', 'one per buyer');
        if (orders.size >= campaign.stock_total) return err(res, 410, 'sold_out', 'no unit left');
        const order_id = randomBytes(16).toString('hex');
        orders.set(order_id, { order_id, campaign_id: id, user_id: sub, status: 'queued', created_at_ms: now(),
          pay_by_ms: now() + payWindowMs, price_cents: campaign.price_cents });
        setTimeout(() => { const q = orders.get(order_id); if (q.status === 'queued') q.status = 'confirmed'; }, confirmAfterMs);
        return sendJson(res, 202, { order_id, status: 'queued' });
      }
      const o = /^\/api\/v1\/orders\/([0-9a-f]{32})$/.exec(p);
      if (req.method === 'GET' && o) {
        if (!sub) return err(res, 401, 'unauthorized', 'missing or invalid buyer token');
        const order = orders.get(o[1]);
        if (!order || order.user_id !== sub) return err(res, 404, 'order_not_found', 'no order of yours has this id');
        return sendJson(res, 200, settle(order));
      }
      const pay = /^\/api\/v1\/orders\/([0-9a-f]{32})\/pay$/.exec(p);
      if (pay) {
        if (req.method !== 'POST') return err(res, 405, 'method_not_allowed', 'use POST');
        if (!sub) return err(res, 401, 'unauthorized', 'missing or invalid buyer token');
        const order = orders.get(pay[1]);
        if (!order || order.user_id !== sub) return err(res, 404, 'order_not_found', 'no order of yours has this id');
        settle(order);
        state.pays.push({ sub, order_id: order.order_id, status_before: order.status, at: now() });
        if (state.payFailFirst > 0) {
          state.payFailFirst--;
          return err(res, 503, 'overloaded', 'the payment provider is busy', { 'Retry-After': '1' });
        }
        if (state.notConfirmedFirst > 0 && order.status !== 'paid') {
          state.notConfirmedFirst--;
          return err(res, 409, 'order_not_confirmed', 'the order is still being written; try again in a moment', { 'Retry-After': '1' });
        }
        if (order.status === 'paid') return sendJson(res, 200, order);
        if (order.status === 'queued') {
          return err(res, 409, 'order_not_confirmed', 'the order is still being written; try again in a moment', { 'Retry-After': '1' });
        }
        if (order.status === 'expired' || (order.status === 'confirmed' && now() > order.pay_by_ms)) {
          return err(res, 409, 'order_expired', 'the payment window has closed');
        }
        if (order.status !== 'confirmed') return err(res, 409, 'order_cancelled', 'the order was cancelled');
        order.status = 'paid';
        return sendJson(res, 200, order);
      }
      if (req.method === 'GET' && p === '/admin/v1/campaigns/' + id + '/orders') return sendJson(res, 200, [...orders.values()]);
      return err(res, 404, 'not_found', 'no such endpoint');
    } catch (e) {
      return err(res, 500, 'internal', 'mock bug: ' + e.message);
    }
  });
  return new Promise((ok) => {
    server.listen(port, '127.0.0.1', () => {
      const url = 'http://127.0.0.1:' + server.address().port;
      const setStatus = (orderId, status) => { orders.get(orderId).status = status; };
      ok({ url, id, state, orders, bank, setStatus, room: rm, close: () => new Promise((done) => { server.closeAllConnections(); server.close(done); }) });
    });
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const a = process.argv.slice(2);
  const opt = (k, d) => { const i = a.indexOf('--' + k); return i >= 0 ? a[i + 1] : d; };
  const m = await startMock({ port: Number(opt('port', 0)), startInMs: Number(opt('start-in-ms', 2000)),
    quiz: opt('quiz', 'true') === 'true', failFirst: Number(opt('fail-first', 0)),
    payWindowMs: Number(opt('pay-window-ms', 900000)),
    room: opt('room', 'false') === 'true' ? { admitPerS: Number(opt('admit-per-s', 2)), ahead: Number(opt('room-ahead', 10)) } : null });
  console.log('mock gateway listening on ' + m.url);
  console.log('buyer page: ' + m.url + '/items/' + m.id + '.html#token=' + buyerToken('alice'));
  console.log('dashboard: ' + m.url + '/admin/dashboard (admin token ' + MOCK_ADMIN_TOKEN + ')');
}

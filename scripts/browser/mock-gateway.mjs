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
//
// prints `mock gateway listening on http://127.0.0.1:<port>` and serves until killed.
// `timeAheadMs` (option) makes /api/v1/time run ahead of the sale's own clock, so a page asks too early
// and meets 425 not_started. `--fail-first N` refuses the first N correct answers with 403 quiz_failed ("wrong"), to exercise
// the page's fresh-question path. `notConfirmedFirst: N` answers the first N payments 409
// order_not_confirmed (Retry-After: 1) whatever the order's status, as a gateway that has not heard
// of the confirmation yet would; `payFailFirst: N` answers the first N payments 503 overloaded. The
// returned `setStatus(orderId, status)` changes an order behind the page's back (the sweeper expiring
// it early, the shop cancelling it). Also importable: `startMock(options)` returns { url, close, state }.
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { deflateSync } from 'node:zlib';

const here = dirname(fileURLToPath(import.meta.url));
const cdn = join(here, '..', '..', 'static-cdn');

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

export function startMock({ port = 0, startInMs = 2000, quiz = true, failFirst = 0, id = 'mock-item',
  bankSize = 16, minMs = 1000, ttlMs = 60000, timeAheadMs = 0, payWindowMs = 900000, confirmAfterMs = 600,
  notConfirmedFirst = 0, payFailFirst = 0 } = {}) {
  const now = () => Date.now();
  const campaign = { id, title: 'Mock phone <b>X</b>', price_cents: 19999, stock_total: 5,
    starts_at_ms: now() + startInMs, ends_at_ms: now() + 3600000, quiz, hidden_path: true };
  const bank = Array.from({ length: bankSize }, () => {
    const answer = randomBytes(4).toString('hex').toUpperCase().slice(0, 5).replace(/0/g, 'K').replace(/1/g, 'M');
    return { answer, file: randomBytes(16).toString('hex') + '.png' };
  });
  const byFile = new Map(bank.map((q) => [q.file, q]));
  const issued = new Map(); // quiz token -> { sub, q, at, used }
  const secrets = new Map(); // sub -> secret path segment
  const orders = new Map(); // order id -> order
  const state = { failFirst, notConfirmedFirst, payFailFirst, grabs: [], quizAsks: 0, pathAsks: 0, pays: [] };
  // The sweeper: an unpaid confirmed order expires 250 ms after its deadline (checked when read).
  const settle = (o) => {
    if (o.status === 'confirmed' && now() > o.pay_by_ms + 250) o.status = 'expired';
    return o;
  };
  const started = () => now() >= campaign.starts_at_ms;
  const template = readFileSync(join(cdn, 'item.html'), 'utf8');
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

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
          remaining_hint: campaign.stock_total - sold }), { 'Cache-Control': 'public, max-age=1' });
      }
      if (req.method === 'GET' && p === '/admin/v1/campaigns/' + id + '/quiz-answers') {
        return sendJson(res, 200, { answers: Object.fromEntries(bank.map((q) => ['/static/quiz/' + q.file, q.answer])) });
      }
      const sub = subOf(req);
      if (req.method === 'GET' && p === cp + '/grab-path') {
        state.pathAsks++;
        if (!sub) return err(res, 401, 'unauthorized', 'missing or invalid buyer token', { 'WWW-Authenticate': 'Bearer' });
        if (!started()) return err(res, 425, 'not_started', 'the sale has not started yet');
        if (!secrets.has(sub)) secrets.set(sub, randomBytes(12).toString('hex'));
        return sendJson(res, 200, { grab_path: cp + '/g/' + secrets.get(sub) + '/grab' });
      }
      if (req.method === 'GET' && p === cp + '/quiz') {
        state.quizAsks++;
        if (!sub) return err(res, 401, 'unauthorized', 'missing or invalid buyer token', { 'WWW-Authenticate': 'Bearer' });
        if (!quiz) return err(res, 404, 'not_found', 'this sale has no quiz');
        if (!started()) return err(res, 425, 'not_started', 'the sale has not started yet');
        const q = bank[Math.floor(Math.random() * bank.length)];
        const token = randomBytes(16).toString('hex');
        issued.set(token, { sub, q, at: now(), used: false });
        return sendJson(res, 200, { quiz_token: token, image_url: '/static/quiz/' + q.file, min_answer_ms: minMs, expires_in_ms: ttlMs });
      }
      const g = /^\/api\/v1\/campaigns\/([^/]+)\/(?:g\/([^/]+)\/)?grab$/.exec(p);
      if (g) {
        if (req.method !== 'POST') return err(res, 405, 'method_not_allowed', 'use POST');
        if (g[1] !== id) return err(res, 404, 'campaign_not_found', 'no campaign has this id');
        if (!started()) return err(res, 425, 'not_started', 'the sale has not started yet');
        if (!sub) return err(res, 401, 'unauthorized', 'missing or invalid buyer token', { 'WWW-Authenticate': 'Bearer' });
        const raw = await readBody(req);
        if (raw === null) return err(res, 413, 'payload_too_large', 'request body is larger than 4096 bytes');
        let body;
        try { body = raw ? JSON.parse(raw) : {}; } catch (_) { return err(res, 400, 'bad_request', 'body is not JSON'); }
        state.grabs.push({ sub, path: p, body });
        if (!g[2] || g[2] !== secrets.get(sub)) return err(res, 404, 'not_found', 'no such endpoint');
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
      ok({ url, id, state, orders, bank, setStatus, close: () => new Promise((done) => { server.closeAllConnections(); server.close(done); }) });
    });
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const a = process.argv.slice(2);
  const opt = (k, d) => { const i = a.indexOf('--' + k); return i >= 0 ? a[i + 1] : d; };
  const m = await startMock({ port: Number(opt('port', 0)), startInMs: Number(opt('start-in-ms', 2000)),
    quiz: opt('quiz', 'true') === 'true', failFirst: Number(opt('fail-first', 0)),
    payWindowMs: Number(opt('pay-window-ms', 900000)) });
  console.log('mock gateway listening on ' + m.url);
  console.log('buyer page: ' + m.url + '/items/' + m.id + '.html#token=' + buyerToken('alice'));
}

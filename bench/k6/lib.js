// Shared pieces of the k6 scenarios (flash-sale.js, sold-out-storm.js): the admin calls that set a
// campaign up, buyer tokens minted in batches per VU, outcome metrics per code, and the sale's
// invariants checked at the end through the admin API. See bench/k6/README.md.
import http from 'k6/http';
import { sleep } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import exec from 'k6/execution';

// Refusals the sale is made of are answers, not failures, in k6's own http_req_failed.
http.setResponseCallback(http.expectedStatuses({ min: 200, max: 299 }, 409, 410, 423, 425));

export const BASE = (__ENV.SECKILL_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
export const ADMIN_TOKEN = __ENV.SECKILL_ADMIN_TOKEN || '';

// Outcome of every grab, tagged by its code (`accepted` for a 202): the load tester's table.
export const grabOutcomes = new Counter('seckill_grab_outcomes');
// Answers no scenario expects (a 500, an undocumented status, a broken body): must stay 0.
export const unexpected = new Counter('seckill_unexpected');
// Broken sale invariants found at the end: must stay 0.
export const invariantViolations = new Counter('seckill_invariant_violations');
export const grabLatency = new Trend('seckill_grab_ms', true);
export const confirmLatency = new Trend('seckill_confirm_ms', true);
export const payLatency = new Trend('seckill_pay_ms', true);

// Every grab answer the contract documents, by status.
const GRAB_CODES = {
  202: [''], 400: ['bad_request'], 401: ['unauthorized'], 403: ['quiz_failed', 'forbidden'],
  404: ['campaign_not_found', 'not_found'], 409: ['already_bought'], 410: ['sold_out', 'ended'],
  423: ['paused'], 425: ['not_started'], 429: ['rate_limited'], 503: ['overloaded', 'unavailable'],
};

export function adminHeaders() {
  if (!ADMIN_TOKEN) throw new Error('set SECKILL_ADMIN_TOKEN to the gateway admin token');
  return { Authorization: 'Bearer ' + ADMIN_TOKEN, 'Content-Type': 'application/json' };
}

export function json(r) {
  try { return r.json(); } catch (_) { return null; }
}

function must(r, what, statuses) {
  if (!statuses.includes(r.status)) {
    throw new Error(what + ': HTTP ' + r.status + ' ' + String(r.body).slice(0, 300));
  }
  return json(r);
}

export function serverNow() {
  return must(http.get(BASE + '/api/v1/time', { tags: { name: 'time' } }), 'GET /api/v1/time', [200]).now_ms;
}

// Creates the scenario's own load-test campaign, starting `leadMs` from now on the server's clock,
// preloads it (the quiz bank is drawn) and returns what the VUs need.
export function setUpCampaign(spec, leadMs) {
  const now = serverNow();
  const id = spec.id || ('k6-' + now.toString(36));
  const body = Object.assign({ title: 'k6 load test', price_cents: 100, per_user_limit: 1 }, spec, {
    id, load_test: true, starts_at_ms: now + leadMs, ends_at_ms: now + leadMs + 3600 * 1000,
  });
  const h = { headers: adminHeaders(), tags: { name: 'admin' }, timeout: '60s' };
  const created = must(http.post(BASE + '/admin/v1/campaigns', JSON.stringify(body), h), 'create campaign', [201]);
  // Preload waits for the quiz bank at most 10 s per call; a large bank takes a few calls.
  for (let i = 0; i < 60; i++) {
    const p = must(http.post(BASE + '/admin/v1/campaigns/' + id + '/preload', '{}', h), 'preload', [200]);
    if (!p.quiz_images || p.quiz_images.complete) break;
  }
  let answers = {};
  if (created.quiz) {
    answers = must(http.get(BASE + '/admin/v1/campaigns/' + id + '/quiz-answers', h), 'quiz answers', [200]).answers;
  }
  // The start on this machine's clock (the server's, shifted by the difference seen here).
  const startsAtLocal = Date.now() + (now + leadMs - serverNow());
  return { id, stock: created.stock_total, startsAtLocal, answers, run: now.toString(36) };
}

// Buyer tokens, minted by the admin API in batches per VU (a VU never shares a buyer with another,
// and setup data stays small however many buyers a run has).
const MINT_BATCH = 200;
let pool = [];
let minted = 0;
export function nextBuyer(run) {
  if (pool.length === 0) {
    const vu = exec.vu.idInTest;
    const ids = [];
    for (let i = 0; i < MINT_BATCH; i++) ids.push('k6-' + run + '-' + vu + '-' + (minted + i));
    minted += MINT_BATCH;
    const r = http.post(BASE + '/admin/v1/tokens', JSON.stringify({ user_ids: ids, ttl_s: 3600 }),
      { headers: adminHeaders(), tags: { name: 'mint' }, timeout: '30s' });
    const b = must(r, 'mint tokens', [200]);
    pool = ids.map((u) => ({ user: u, token: b.tokens[u] }));
  }
  return pool.pop();
}

// Records a grab answer (or the refusal of a step before it: grab path, quiz); returns its code
// ('' for 202). `started` (ms) times a grab; null for the steps before it.
export function recordGrab(r, started) {
  if (started !== null) grabLatency.add(Date.now() - started);
  const b = json(r) || {};
  const code = r.status === 202 ? '' : String(b.code || '');
  const known = GRAB_CODES[r.status];
  if (!known || !known.includes(code) || (r.status === 202 && !b.order_id)) {
    unexpected.add(1, { status: String(r.status), code });
  }
  grabOutcomes.add(1, { code: r.status === 202 ? 'accepted' : code || 'http_' + r.status });
  return code;
}

// Follows a won order to `confirmed` (bounded), then pays it when asked. True when paid.
export function confirmAndPay(id, token, pay) {
  const h = { headers: { Authorization: 'Bearer ' + token }, tags: { name: 'order' } };
  const started = Date.now();
  let status = 'queued';
  for (let i = 0; i < 40 && status === 'queued'; i++) {
    const r = http.get(BASE + '/api/v1/orders/' + id, h);
    if (r.status === 200) status = (json(r) || {}).status;
    else if (r.status !== 404 && r.status !== 429 && r.status !== 503) unexpected.add(1, { status: String(r.status), code: 'order' });
    if (status === 'queued') sleep(0.25);
  }
  if (status !== 'confirmed') {
    unexpected.add(1, { status: 'order', code: 'not_confirmed_in_10s' });
    return false;
  }
  confirmLatency.add(Date.now() - started);
  if (!pay) return false;
  const t = Date.now();
  const p = http.post(BASE + '/api/v1/orders/' + id + '/pay', '{}',
    { headers: { Authorization: 'Bearer ' + token, 'Content-Type': 'application/json' }, tags: { name: 'pay' } });
  payLatency.add(Date.now() - t);
  if (p.status !== 200 || (json(p) || {}).status !== 'paid') {
    unexpected.add(1, { status: String(p.status), code: 'pay' });
    return false;
  }
  return true;
}

// The sale's invariants, from the admin API once the writers have drained: every unit sold when
// demand exceeded it (winners = stock), no buyer twice, every winner persisted; plus, when the
// scenario paid every won order, paid = winners. Violations are counted (threshold: 0) and thrown.
export function checkInvariants(data, opts) {
  const h = { headers: adminHeaders(), tags: { name: 'admin' }, timeout: '60s' };
  let stats = null;
  for (let i = 0; i < 120; i++) {
    stats = must(http.get(BASE + '/admin/v1/campaigns/' + data.id + '/stats', h), 'stats', [200]);
    if (stats.orders_queued === 0) break;
    sleep(0.5);
  }
  const rows = must(http.get(BASE + '/admin/v1/campaigns/' + data.id + '/orders?format=json', h), 'export', [200]);
  const live = rows.filter((o) => o.status !== 'expired' && o.status !== 'cancelled');
  const users = new Set(live.map((o) => o.user_id));
  const problems = [];
  if (opts.soldOut && live.length !== data.stock) problems.push('winners ' + live.length + ' != stock ' + data.stock);
  if (live.length > data.stock) problems.push('winners ' + live.length + ' > stock ' + data.stock);
  if (users.size !== live.length) problems.push((live.length - users.size) + ' buyers hold more than one unit');
  if (stats.orders_queued !== 0) problems.push(stats.orders_queued + ' orders still queued after 60 s');
  if (stats.sold !== live.length) problems.push('stats sold ' + stats.sold + ' != persisted winners ' + live.length);
  if (stats.remaining !== null && stats.remaining + stats.sold !== data.stock) {
    problems.push('remaining ' + stats.remaining + ' + sold ' + stats.sold + ' != stock ' + data.stock);
  }
  if (opts.paidAll && stats.orders_paid !== live.length) problems.push('paid ' + stats.orders_paid + ' != winners ' + live.length);
  console.log('invariants: stock ' + data.stock + ', winners ' + live.length + ', distinct buyers ' + users.size +
    ', persisted ' + stats.orders_persisted + ', paid ' + stats.orders_paid + ', remaining ' + stats.remaining +
    (problems.length ? '; VIOLATED: ' + problems.join('; ') : '; all hold'));
  invariantViolations.add(problems.length);
  if (problems.length) throw new Error('sale invariants violated: ' + problems.join('; '));
}

// Waits (bounded) until the campaign's start (see `setUpCampaign`).
export function untilStart(data) {
  const left = data.startsAtLocal + 20 - Date.now();
  if (left > 0) sleep(Math.min(left, 60000) / 1000);
}

// The buyer page against mock-gateway.mjs, in Debian's headless Chromium: checks the page's funnel
// logic, buyer-quiz.mjs, the waiting room (the page and buyer-queue.mjs) and the dashboard's waiting-room
// panel without building the server (gateway/tests/browser.rs runs the real one).
//
//   node --test scripts/browser/page.test.mjs        (after bash scripts/install-browser.sh)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startMock, buyerToken, MOCK_ADMIN_TOKEN } from './mock-gateway.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'seckill-page-'));

async function answersFile(mock) {
  const r = await fetch(mock.url + '/admin/v1/campaigns/' + mock.id + '/quiz-answers');
  const path = join(tmp, mock.id + '-answers.json');
  writeFileSync(path, await r.text());
  return path;
}

function runBuyer(args, limitMs = 60000, script = 'buyer-quiz.mjs') {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(here, script), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), limitMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      const last = out.trim().split('\n').pop() || '';
      let json = null;
      try { json = JSON.parse(last); } catch (_) { /* shown below */ }
      resolve({ code, json, out, err });
    });
  });
}

test('a buyer passes the quiz and grabs through the hidden path', async () => {
  const mock = await startMock({ id: 'quiz-item', startInMs: 2500 });
  try {
    const shot = join(tmp, 'quiz.png');
    const r = await runBuyer(['--url', mock.url, '--campaign', mock.id, '--token', buyerToken('alice'),
      '--answers', await answersFile(mock), '--screenshot', shot]);
    assert.equal(r.code, 0, r.out + r.err);
    assert.equal(r.json.ok, true, r.out);
    assert.ok(existsSync(shot));
    const orders = [...mock.orders.values()].filter((o) => o.user_id === 'alice');
    assert.equal(orders.length, 1);
    assert.equal(orders[0].order_id, r.json.order_id);
    assert.match(r.json.result_text, new RegExp(r.json.order_id));
    assert.match(r.json.hint_before_answer, /^You can answer in [12] s\.$/, 'the page told the buyer how long to wait');
    assert.ok(r.json.answer_wait_ms >= 700, 'the grab button stayed disabled for the minimum: ' + r.json.answer_wait_ms);
    // Every grab went to this buyer's hidden path, with the quiz fields only.
    assert.ok(mock.state.grabs.length >= 1);
    for (const g of mock.state.grabs) {
      assert.match(g.path, /\/g\/[0-9a-f]+\/grab$/);
      assert.deepEqual(Object.keys(g.body).sort(), ['answer', 'quiz_token']);
    }
    assert.equal(mock.state.pathAsks, 1, 'grab-path is asked from the start instant (server clock), once');
    assert.deepEqual(r.json.console_errors.filter((e) => !/Failed to load resource/.test(e)), []);
  } finally { await mock.close(); }
});

test('a page whose clock runs early meets 425 not_started and retries until the start', async () => {
  // The page asks for the grab path when its (early) clock says the sale
  // started: 5 s before the real start. Launching Chromium on a loaded
  // machine can take seconds, so the margin must exceed it (with 2.5 s and
  // 1.5 s ahead the page sometimes first asked after the real start).
  const mock = await startMock({ id: 'early-item', startInMs: 6000, timeAheadMs: 5000 });
  try {
    const r = await runBuyer(['--url', mock.url, '--campaign', mock.id, '--token', buyerToken('dave'),
      '--answers', await answersFile(mock), '--screenshot', join(tmp, 'early.png')]);
    assert.equal(r.code, 0, r.out + r.err);
    assert.ok(mock.state.pathAsks >= 2, 'grab-path asked early, refused, asked again: ' + mock.state.pathAsks);
    assert.ok(r.json.failed_responses.some((f) => f.startsWith('425 GET ')), r.out);
  } finally { await mock.close(); }
});

test('a refused answer brings a fresh question, and the second answer wins', async () => {
  const mock = await startMock({ id: 'refused-item', startInMs: 500, failFirst: 1 });
  try {
    const r = await runBuyer(['--url', mock.url, '--campaign', mock.id, '--token', buyerToken('bob'),
      '--answers', await answersFile(mock), '--screenshot', join(tmp, 'refused.png')]);
    assert.equal(r.code, 0, r.out + r.err);
    assert.equal(r.json.attempts, 2, r.out);
    assert.match(r.json.refusals[0], /Your answer was not accepted\. The answer is wrong.*A new question is shown above\./);
    const tokens = mock.state.grabs.map((g) => g.body.quiz_token);
    assert.equal(new Set(tokens).size, tokens.length, 'no quiz token was sent twice');
    assert.ok(mock.state.quizAsks >= 2);
  } finally { await mock.close(); }
});

test('without a quiz the page grabs with {} on the grab path', async () => {
  const { chromium } = await import('playwright-core');
  const mock = await startMock({ id: 'plain-item', startInMs: 300, quiz: false });
  const browser = await chromium.launch({ executablePath: process.env.SECKILL_CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox'] });
  try {
    const page = await browser.newPage();
    const problems = [];
    page.on('pageerror', (e) => problems.push(String(e)));
    page.on('console', (m) => { if (m.type() === 'error' && /Content Security Policy/i.test(m.text())) problems.push(m.text()); });
    await page.goto(mock.url + '/items/' + mock.id + '.html#token=' + buyerToken('carol'));
    assert.equal(await page.isHidden('#quiz'), true);
    await page.waitForFunction(() => !document.getElementById('grab').disabled, null, { timeout: 10000 });
    await page.click('#grab');
    await page.waitForSelector('#result[data-kind="success"]', { timeout: 10000 });
    await page.waitForFunction(() => /You won!/.test(document.getElementById('result').textContent), null, { timeout: 10000 });
    assert.equal(mock.state.grabs.length, 1);
    assert.match(mock.state.grabs[0].path, /\/g\/[0-9a-f]+\/grab$/);
    assert.deepEqual(mock.state.grabs[0].body, {});
    assert.equal(await page.isDisabled('#grab'), true, 'no second grab after an order');
    assert.equal(await page.isHidden('#queue'), true, 'no waiting room shown');
    assert.equal(mock.state.joins.length + mock.state.polls.length, 0, 'no queue calls without a waiting room');
    assert.deepEqual(problems, []);
  } finally { await browser.close(); await mock.close(); }
});

test('a token the shop refuses on grab-path signs the buyer out', async () => {
  const { chromium } = await import('playwright-core');
  const mock = await startMock({ id: 'auth-item', startInMs: 0 });
  const browser = await chromium.launch({ executablePath: process.env.SECKILL_CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox'] });
  try {
    const page = await browser.newPage();
    await page.goto(mock.url + '/items/' + mock.id + '.html#token=not-a-jwt');
    await page.waitForSelector('#result[data-kind="error"]', { timeout: 10000 });
    assert.match(await page.textContent('#result'), /buyer token was not accepted/);
    assert.equal(await page.isVisible('#token-form'), true);
    assert.equal(mock.state.grabs.length, 0);
  } finally { await browser.close(); await mock.close(); }
});

test('a question is replaced shortly before it expires', async () => {
  const { chromium } = await import('playwright-core');
  const mock = await startMock({ id: 'expiry-item', startInMs: 0, ttlMs: 2500 });
  const browser = await chromium.launch({ executablePath: process.env.SECKILL_CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox'] });
  try {
    const page = await browser.newPage();
    await page.goto(mock.url + '/items/' + mock.id + '.html#token=' + buyerToken('erin'));
    await page.waitForFunction(() => document.getElementById('quiz-image').getAttribute('src'), null, { timeout: 10000 });
    const asked = mock.state.quizAsks;
    await page.fill('#quiz-answer', 'ABC');
    await page.waitForFunction((n) => document.getElementById('quiz-note').textContent.includes('expired'), asked, { timeout: 6000 });
    await page.waitForFunction(() => document.getElementById('quiz-image').getAttribute('src'), null, { timeout: 5000 });
    assert.ok(mock.state.quizAsks > asked, 'a new question was fetched');
    assert.equal(await page.inputValue('#quiz-answer'), '', 'the old answer is cleared');
    assert.equal(mock.state.grabs.length, 0, 'nothing was sent for the expired question');
  } finally { await browser.close(); await mock.close(); }
});

test('a buyer sees queued then confirmed, pays with the time left, sees paid; reloads resume', async () => {
  // The first payment meets 409 order_not_confirmed (Retry-After: 1): the page retries the press itself.
  const mock = await startMock({ id: 'pay-item', startInMs: 500, notConfirmedFirst: 1 });
  try {
    const shot = join(tmp, 'paid.png');
    const r = await runBuyer(['--url', mock.url, '--campaign', mock.id, '--token', buyerToken('frank'),
      '--answers', await answersFile(mock), '--screenshot', shot, '--after-grab', 'pay', '--reload', 'true',
      '--timeout-ms', '40000']);
    assert.equal(r.code, 0, r.out + r.err);
    assert.equal(r.json.ok, true, r.out);
    assert.ok(existsSync(shot) && existsSync(r.json.confirmed_screenshot), r.out);
    const order = mock.orders.get(r.json.order_id);
    assert.equal(order.status, 'paid');
    // Loads: grab (queued, confirmed), reload (confirmed, paid), reload (paid).
    const h = r.json.status_history;
    assert.equal(h.length, 3, JSON.stringify(h));
    assert.deepEqual(h[0], ['queued', 'confirmed'], JSON.stringify(h));
    assert.deepEqual(h[1], ['confirmed', 'paid'], JSON.stringify(h));
    assert.deepEqual(h[2], ['paid'], JSON.stringify(h));
    // 900 s to pay, counted down on the server's clock.
    assert.match(r.json.pay_time_left, /^1[45]:\d\d$/);
    assert.notEqual(r.json.pay_time_left_later, r.json.pay_time_left);
    assert.match(r.json.pay_time_left_after_reload, /^1[45]:\d\d$/);
    assert.equal(r.json.pay_button_text, 'Pay 199.99');
    assert.match(r.json.confirmed_text, new RegExp('Order ' + r.json.order_id + ' is confirmed\\. Pay by '));
    assert.match(r.json.paid_text, /is paid/);
    assert.match(r.json.paid_text_after_reload, /is paid/);
    assert.deepEqual(mock.state.pays.map((p) => p.status_before), ['confirmed', 'confirmed'], 'one press, one retry');
    assert.ok(r.json.order_responses.includes('POST 409 order_not_confirmed'), r.out);
    assert.ok(r.json.order_responses.includes('POST 200 paid'), r.out);
  } finally { await mock.close(); }
});

test('an unpaid order shows Pay with the time left, then expired; the page never pays', async () => {
  const mock = await startMock({ id: 'unpaid-item', startInMs: 300, quiz: false, payWindowMs: 6000 });
  try {
    const r = await runBuyer(['--url', mock.url, '--campaign', mock.id, '--token', buyerToken('gina'),
      '--screenshot', join(tmp, 'expired.png'), '--after-grab', 'expire', '--reload', 'true']);
    assert.equal(r.code, 0, r.out + r.err);
    assert.equal(mock.orders.get(r.json.order_id).status, 'expired');
    assert.equal(mock.state.pays.length, 0, 'no payment was sent');
    assert.match(r.json.pay_time_left, /^0:0[1-6]$/);
    assert.deepEqual(r.json.status_history[0], ['queued', 'confirmed'], r.out);
    assert.deepEqual(r.json.status_history[1], ['confirmed', 'expired'], r.out);
    // The page waited for the shop's verdict rather than deciding by its own clock.
    assert.ok(r.json.order_responses.includes('GET 200 expired'), r.out);
    assert.match(r.json.expired_text, /expired: it was not paid in time/);
    assert.match(r.json.expired_text, /back on sale/);
    assert.equal(r.json.grab_enabled_after_expiry, true, 'the buyer may grab again after the expiry');
  } finally { await mock.close(); }
});

test('payment refusals: busy then paid, expired by the shop, cancelled by the shop', async () => {
  const { chromium } = await import('playwright-core');
  const mock = await startMock({ id: 'refusal-item', startInMs: 0, quiz: false, payFailFirst: 1 });
  const browser = await chromium.launch({ executablePath: process.env.SECKILL_CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox'] });
  const problems = [];
  // A buyer in a fresh context, grabbed and confirmed, with Pay offered; returns the page and order id.
  const confirmedBuyer = async (sub) => {
    const page = await (await browser.newContext()).newPage();
    page.on('pageerror', (e) => problems.push(String(e)));
    await page.goto(mock.url + '/items/' + mock.id + '.html#token=' + buyerToken(sub));
    await page.waitForFunction(() => !document.getElementById('grab').disabled, null, { timeout: 10000 });
    await page.click('#grab');
    await page.waitForSelector('#result[data-order-status="confirmed"]', { state: 'attached', timeout: 10000 });
    await page.waitForSelector('#pay-button:enabled', { timeout: 5000 });
    return { page, id: await page.getAttribute('#result', 'data-order-id') };
  };
  try {
    // 503: the page says so, keeps Pay (disabled for a moment), and the second press pays.
    const busy = await confirmedBuyer('hank');
    await busy.page.click('#pay-button');
    await busy.page.waitForFunction(() => /very busy.*Paying again is safe/.test(document.getElementById('pay-note').textContent),
      null, { timeout: 5000 });
    assert.equal(await busy.page.getAttribute('#result', 'data-order-status'), 'confirmed');
    await busy.page.waitForSelector('#pay-button:enabled', { timeout: 5000 });
    await busy.page.click('#pay-button');
    await busy.page.waitForSelector('#result[data-order-status="paid"]', { state: 'attached', timeout: 5000 });
    assert.equal(mock.orders.get(busy.id).status, 'paid');
    assert.equal(await busy.page.isHidden('#pay'), true);

    // The shop expired the order although the page's clock still shows time left: 409 order_expired.
    const late = await confirmedBuyer('ivy');
    mock.setStatus(late.id, 'expired');
    await late.page.click('#pay-button');
    await late.page.waitForSelector('#result[data-order-status="expired"]', { state: 'attached', timeout: 5000 });
    assert.match(await late.page.textContent('#result'), /expired: it was not paid in time/);
    assert.equal(await late.page.isHidden('#pay'), true);

    // The shop cancelled it: 409 order_cancelled.
    const gone = await confirmedBuyer('jack');
    mock.setStatus(gone.id, 'cancelled');
    await gone.page.click('#pay-button');
    await gone.page.waitForSelector('#result[data-order-status="cancelled"]', { state: 'attached', timeout: 5000 });
    assert.match(await gone.page.textContent('#result'), /was cancelled/);
    assert.equal(await gone.page.isHidden('#pay'), true);

    assert.deepEqual(mock.state.pays.map((p) => p.sub), ['hank', 'hank', 'ivy', 'jack']);
    assert.deepEqual(problems, []);
  } finally { await browser.close(); await mock.close(); }
});

// ---- the waiting room ------------------------------------------------------------------------------
const chromiumPath = () => process.env.SECKILL_CHROMIUM || '/usr/bin/chromium';
// Every text #queue-note shows, in order (recorded in the page: notes may last less than a poll).
const recordNotes = () => {
  window.__notes = [];
  document.addEventListener('DOMContentLoaded', () => {
    const n = document.getElementById('queue-note');
    const push = () => { const t = n.textContent.trim(); if (t && window.__notes[window.__notes.length - 1] !== t) window.__notes.push(t); };
    new MutationObserver(push).observe(n, { childList: true, characterData: true, subtree: true });
  });
};

test('a waiting-room buyer pre-queues, sees the place count down, is admitted, answers and grabs (buyer-queue.mjs)', async () => {
  // The page opens well before the start (Chromium may take seconds to launch on a loaded machine).
  const mock = await startMock({ id: 'room-quiz-item', startInMs: 8000, room: { admitPerS: 3, ahead: 9, pollAfterMs: 400 } });
  try {
    const shot = join(tmp, 'room.png');
    const r = await runBuyer(['--url', mock.url, '--campaign', mock.id, '--token', buyerToken('kim'),
      '--answers', await answersFile(mock), '--screenshot', shot], 60000, 'buyer-queue.mjs');
    assert.equal(r.code, 0, r.out + r.err);
    assert.equal(r.json.ok, true, r.out);
    assert.ok(existsSync(shot) && existsSync(r.json.queue_screenshot), r.out);
    // Before the start: the expected place, drawn at the start.
    assert.equal(r.json.pre_queue_seen, true, r.out);
    assert.match(r.json.pre_queue_text, /^Your place is drawn at random when the sale starts; expected place about 10 of 10\.$/);
    // After the draw: the place counts down to the admission, with a progress bar and an estimate.
    assert.equal(r.json.counted_down, true, JSON.stringify(r.json.position_numbers));
    // The first place after the draw: 10, less whoever the line let in before the first poll.
    assert.ok(r.json.position_numbers[0] <= 10 && r.json.position_numbers[0] >= 5, JSON.stringify(r.json.positions));
    assert.equal(r.json.position_numbers[r.json.position_numbers.length - 1], 1, JSON.stringify(r.json.positions));
    assert.equal(r.json.position_increases, 0);
    assert.equal(r.json.progress_visible, true);
    assert.equal(r.json.eta_visible, true);
    assert.ok(r.json.progress_values.length >= 3 && r.json.progress_values.every((v, i, a) => i === 0 || v >= a[i - 1]),
      JSON.stringify(r.json.progress_values));
    assert.ok(r.json.eta_texts.every((t) => /^Estimated wait: (a few seconds|about \d+ s)[.,]/.test(t)), JSON.stringify(r.json.eta_texts));
    assert.equal(r.json.grab_enabled_while_waiting, 0, 'Grab stayed disabled while waiting');
    assert.match(r.json.admitted_text, /^It’s your turn! Type the characters in the picture/);
    // One join; the ranked ticket of the draw replaced the pre-queue one, and later polls carry it.
    assert.equal(r.json.queue_requests.join, 1, r.out);
    assert.equal(r.json.ticket_replaced, 1, r.out);
    const polled = mock.state.polls.map((p) => p.ticket);
    const firstRanked = polled.findIndex((t) => /^mq1\.1\.r\d+\./.test(t));
    assert.ok(firstRanked > 0 && polled.slice(firstRanked).every((t) => /^mq1\.1\.r10\.kim$/.test(t)), JSON.stringify(polled));
    // The grab path came from the admission: no grab-path call, no question before the turn.
    assert.equal(r.json.grab_path_requests, 0);
    assert.equal(mock.state.pathAsks, 0);
    assert.equal(mock.state.quizNotAdmitted, 0, 'no question was asked before the admission');
    assert.ok(r.json.grab_posts.length >= 1 && r.json.grab_posts.every((p) => /\/grab\/r10\.[0-9a-f]+$/.test(p)), r.out);
    for (const g of mock.state.grabs) assert.deepEqual(Object.keys(g.body).sort(), ['answer', 'quiz_token']);
    assert.equal(r.json.order_status, 'confirmed');
    assert.deepEqual(r.json.status_history, ['queued', 'confirmed']);
    assert.equal(mock.orders.get(r.json.order_id).user_id, 'kim');
    assert.deepEqual(r.json.console_errors.filter((e) => !/Failed to load resource/.test(e)), []);
  } finally { await mock.close(); }
});

test('the waiting room rides out 503s and a queue reset, and replaces a ticket that is not the buyer\u2019s', async () => {
  const { chromium } = await import('playwright-core');
  const mock = await startMock({ id: 'room-fault-item', startInMs: 0, quiz: false,
    room: { admitPerS: 2, ahead: 30, pollAfterMs: 400, failPolls: 2, resetAtPoll: 3 } });
  const browser = await chromium.launch({ executablePath: chromiumPath(), args: ['--no-sandbox'] });
  try {
    const page = await browser.newPage();
    const problems = [];
    page.on('pageerror', (e) => problems.push(String(e)));
    // A ticket of another buyer left in this tab: the page polls with it first.
    await page.addInitScript(() => {
      if (!sessionStorage.getItem('planted')) {
        sessionStorage.setItem('planted', '1');
        sessionStorage.setItem('seckill.queue.room-fault-item.zoe', JSON.stringify({ ticket: 'mq1.1.r1.mallory', first: 3 }));
      }
    });
    await page.addInitScript(recordNotes);
    await page.goto(mock.url + '/items/' + mock.id + '.html#token=' + buyerToken('zoe'));
    await page.waitForFunction(() => !document.getElementById('grab').disabled, null, { timeout: 30000 });
    const notes = await page.evaluate(() => window.__notes);
    assert.ok(notes.some((t) => /briefly unavailable; your place is kept\./.test(t)), JSON.stringify(notes));
    assert.ok(notes.some((t) => /could not be confirmed for this account\. Joining the line again/.test(t)), JSON.stringify(notes));
    assert.ok(notes.some((t) => /restarted its waiting line\. Joining it again/.test(t)), JSON.stringify(notes));
    const tickets = mock.state.polls.map((p) => p.ticket);
    assert.deepEqual(tickets.slice(0, 3), ['mq1.1.r1.mallory', 'mq1.1.r1.mallory', 'mq1.1.r1.mallory'], JSON.stringify(tickets));
    assert.equal(mock.state.joins.length, 2, 'joined after the foreign ticket and after the reset');
    assert.ok(tickets.slice(3).every((t) => /\.zoe$/.test(t)), JSON.stringify(tickets));
    const saved = JSON.parse(await page.evaluate(() => sessionStorage.getItem('seckill.queue.room-fault-item.zoe')));
    assert.match(saved.ticket, /^mq1\.2\.r\d+\.zoe$/);
    // Retries were spread out: never two polls within 200 ms.
    const at = mock.state.polls.map((p) => p.at);
    assert.ok(at.every((t, i) => i === 0 || t - at[i - 1] >= 200), JSON.stringify(at.map((t) => t - at[0])));
    await page.click('#grab');
    await page.waitForSelector('#result[data-kind="success"]', { timeout: 10000 });
    assert.match(mock.state.grabs[0].path, /\/grab\/r\d+\.[0-9a-f]+$/);
    assert.deepEqual(problems, []);
  } finally { await browser.close(); await mock.close(); }
});

test('sold out in the line shows at once, checks slowly, and lets the buyer in when a unit comes back', async () => {
  const { chromium } = await import('playwright-core');
  const mock = await startMock({ id: 'room-sold-item', startInMs: 0, quiz: false, room: { admitPerS: 1, ahead: 3, pollAfterMs: 400 } });
  const browser = await chromium.launch({ executablePath: chromiumPath(), args: ['--no-sandbox'] });
  try {
    const page = await browser.newPage();
    const problems = [];
    page.on('pageerror', (e) => problems.push(String(e)));
    await page.goto(mock.url + '/items/' + mock.id + '.html#token=' + buyerToken('lou'));
    await page.waitForSelector('#queue[data-state="waiting"] #queue-position[data-position]', { timeout: 10000 });
    mock.room.soldOut = true;
    await page.waitForSelector('#queue[data-state="sold_out"]', { timeout: 3000 });
    assert.equal((await page.textContent('#queue-position')).trim(), 'Sold out.');
    assert.equal(await page.getAttribute('#state', 'data-state'), 'sold_out');
    assert.equal(await page.isDisabled('#grab'), true);
    assert.equal(await page.isHidden('#queue-progress'), true);
    assert.equal(await page.isHidden('#queue-eta'), true);
    assert.match(await page.textContent('#queue-note'), /If one comes back, this page lets you in by itself/);
    // Final-looking, but the page still asks about every 10 s.
    const before = mock.state.polls.length;
    await page.waitForTimeout(6000);
    assert.ok(mock.state.polls.length - before <= 1, 'polls while sold out: ' + (mock.state.polls.length - before));
    mock.room.soldOut = false;
    await page.waitForFunction(() => !document.getElementById('grab').disabled, null, { timeout: 20000 });
    assert.equal(await page.getAttribute('#queue', 'data-state'), 'admitted');
    assert.equal(await page.getAttribute('#state', 'data-state'), 'live');
    assert.deepEqual(problems, []);
  } finally { await browser.close(); await mock.close(); }
});

test('an admission that lapses unused is final, with a clear message', async () => {
  const { chromium } = await import('playwright-core');
  const mock = await startMock({ id: 'room-lapse-item', startInMs: 0, quiz: false, room: { admitPerS: 5, admitTtlMs: 1500 } });
  const browser = await chromium.launch({ executablePath: chromiumPath(), args: ['--no-sandbox'] });
  try {
    const page = await browser.newPage();
    const problems = [];
    page.on('pageerror', (e) => problems.push(String(e)));
    await page.goto(mock.url + '/items/' + mock.id + '.html#token=' + buyerToken('max'));
    await page.waitForFunction(() => !document.getElementById('grab').disabled, null, { timeout: 10000 });
    // Not pressing Grab: the page asks the line again after the turn's end and learns it lapsed.
    await page.waitForSelector('#queue[data-state="expired"]', { state: 'attached', timeout: 12000 });
    assert.match(await page.textContent('#result'), /Your turn to buy has passed without a purchase/);
    assert.equal(await page.getAttribute('#result', 'data-kind'), 'error');
    assert.equal(await page.isDisabled('#grab'), true);
    assert.equal(await page.textContent('#hint'), 'Your turn to buy has passed.');
    assert.equal(await page.isHidden('#queue'), true);
    const polls = mock.state.polls.length;
    await page.waitForTimeout(2000);
    assert.equal(mock.state.polls.length, polls, 'no polling after the final answer');
    assert.equal(mock.state.grabs.length, 0);
    assert.deepEqual(problems, []);
  } finally { await browser.close(); await mock.close(); }
});

test('the dashboard shows the waiting room and changes its admission rate', async () => {
  const { chromium } = await import('playwright-core');
  const mock = await startMock({ id: 'room-dash-item', startInMs: 0, quiz: false, room: { admitPerS: 2, ahead: 40 } });
  const browser = await chromium.launch({ executablePath: chromiumPath(), args: ['--no-sandbox'] });
  try {
    const page = await browser.newPage({ viewport: { width: 1300, height: 1200 } });
    const problems = [];
    page.on('pageerror', (e) => problems.push(String(e)));
    page.on('console', (m) => { if (m.type() === 'error') problems.push(m.text()); });
    await page.goto(mock.url + '/admin/dashboard');
    await page.fill('#token', MOCK_ADMIN_TOKEN);
    await page.click('#sign-in');
    const card = '[data-room-campaign="room-dash-item"]';
    await page.waitForFunction((sel) => {
      const c = document.querySelector(sel);
      return c && c.querySelectorAll('.uplot canvas').length >= 2 && Number(document.body.dataset.ticks) >= 2;
    }, card, { timeout: 10000 });
    const field = (f) => page.getAttribute(card + ' [data-room-field="' + f + '"]', 'data-value');
    assert.equal(await field('queued'), '40');
    assert.equal(await field('admit_per_s'), '2');
    assert.match(await page.textContent(card + ' [data-room-field="eta_within_30pct"]'), /^0 \/ 0$/);
    assert.equal(await page.isVisible('#rooms-section'), true);
    // A number out of range is refused here, without a request.
    await page.fill(card + ' input[name="admit_per_s"]', '0');
    await page.click(card + ' button[type="submit"]');
    await page.waitForSelector(card + ' [data-room-result][data-kind="error"]', { timeout: 2000 });
    assert.equal(mock.state.roomSettings.length, 0);
    await page.fill(card + ' input[name="admit_per_s"]', '7');
    await page.click(card + ' button[type="submit"]');
    await page.waitForSelector(card + ' [data-room-result][data-kind="ok"]', { timeout: 5000 });
    assert.match(await page.textContent(card + ' [data-room-result]'), /^Admissions set to 7 per second/);
    assert.deepEqual(mock.state.roomSettings, [{ admit_per_s: 7 }]);
    await page.waitForFunction((sel) => document.querySelector(sel + ' [data-room-field="admit_per_s"]').dataset.value === '7',
      card, { timeout: 5000 });
    // The campaigns table still works beside it.
    assert.match(await page.textContent('tr[data-campaign="room-dash-item"] [data-field="sold"]'), /^\d+$/);
    assert.deepEqual(problems, []);
  } finally { await browser.close(); await mock.close(); }
});

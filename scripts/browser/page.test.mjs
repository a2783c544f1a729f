// The buyer page against mock-gateway.mjs, in Debian's headless Chromium: checks the page's funnel
// logic and buyer-quiz.mjs without building the server (gateway/tests/browser.rs runs the real one).
//
//   node --test scripts/browser/page.test.mjs        (after bash scripts/install-browser.sh)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startMock, buyerToken } from './mock-gateway.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'seckill-page-'));

async function answersFile(mock) {
  const r = await fetch(mock.url + '/admin/v1/campaigns/' + mock.id + '/quiz-answers');
  const path = join(tmp, mock.id + '-answers.json');
  writeFileSync(path, await r.text());
  return path;
}

function runBuyer(args, limitMs = 60000) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(here, 'buyer-quiz.mjs'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
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

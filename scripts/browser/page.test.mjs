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

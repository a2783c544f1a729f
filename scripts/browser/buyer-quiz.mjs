#!/usr/bin/env node
// A buyer in headless Chromium: opens the item page with a buyer token, waits for the quiz picture,
// looks its answer up in the load-test export, waits until the page lets it answer (the minimum
// answer time), types the answer, presses Grab and waits for the page to show the order. Without
// --answers the campaign must have no quiz: the buyer presses Grab as soon as the page allows.
//
//   node buyer-quiz.mjs --url <base> --campaign <id> --token <buyer jwt> \
//        [--answers <quiz-answers.json>] --screenshot <png path> [--timeout-ms 30000] [--attempts 3] \
//        [--after-grab none|pay|expire] [--reload true|false]
//
// <quiz-answers.json> is `GET /admin/v1/campaigns/{id}/quiz-answers` as saved:
// {"answers": {"<image_url>": "<answer>"}}.
//
// --after-grab pay: then waits for "confirmed" with the Pay button and the time left to pay, checks
// that this countdown runs, presses Pay and waits for "paid". --after-grab expire: waits for
// "confirmed" and the Pay button the same way, never presses it, and waits for "expired".
// --reload true (with pay or expire): reloads the page once the order is confirmed (the page must
// come back to Pay with the time left) and, with pay, once it is paid (it must come back to paid).
// The order statuses the page showed (`#result[data-order-status]`, every change, per page load)
// are in "status_history"; the shop's answers about the order seen by the page in "order_responses".
// Extra pictures next to --screenshot: `-quiz.png` (the first question) and `-confirmed.png` (Pay
// offered); --screenshot itself is the final state.
//
// Prints one JSON line and exits 0 on success: {"ok":true,"order_id":...,"result_text":...,...};
// on any failure prints {"ok":false,"error":...} (still saving a screenshot when it can) and exits 1.
// Fails too when the page had an uncaught exception or a Content-Security-Policy violation; every
// console error is printed (on standard error) and listed in the JSON line.
//
// Browser: Debian's /usr/bin/chromium (SECKILL_CHROMIUM overrides), driven by playwright-core from
// scripts/browser/node_modules (bash scripts/install-browser.sh installs both). Every wait is bounded,
// and the whole run is cut off after --timeout-ms plus 25 s.
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { hardStop, judgePage, loadChromium, openPage, parseOptions, runner, saveScreenshot } from './harness.mjs';

const { log, finish } = runner('buyer-quiz');

function parseArgs(argv) {
  const out = parseOptions(argv, ['url', 'campaign', 'token', 'answers', 'screenshot', 'timeout-ms', 'attempts',
    'after-grab', 'reload'], ['url', 'campaign', 'token', 'screenshot']);
  out.timeoutMs = Number(out['timeout-ms'] || 30000);
  out.attempts = Number(out.attempts || 3);
  if (!(out.timeoutMs > 0) || !(out.attempts >= 1)) throw new Error('bad --timeout-ms or --attempts');
  out.afterGrab = out['after-grab'] || 'none';
  if (!['none', 'pay', 'expire'].includes(out.afterGrab)) throw new Error('--after-grab is none, pay or expire');
  if (![undefined, 'true', 'false'].includes(out.reload)) throw new Error('--reload is true or false');
  out.reload = out.reload === 'true';
  return out;
}

async function main() {
  let args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (e) {
    finish({ ok: false, error: 'usage: ' + e.message }, 1);
    return;
  }
  hardStop(args.timeoutMs + 25000, finish);
  const browserTools = await loadChromium(finish);
  if (!browserTools) return;

  let answers = null; // null: a campaign without a quiz
  if (args.answers) {
    try {
      const doc = JSON.parse(readFileSync(args.answers, 'utf8'));
      answers = doc && doc.answers;
      if (!answers || typeof answers !== 'object' || Object.keys(answers).length === 0) {
        throw new Error('no "answers" object with entries');
      }
    } catch (e) {
      finish({ ok: false, error: 'cannot read the answers file ' + args.answers + ': ' + e.message }, 1);
      return;
    }
  }

  const base = args.url.replace(/\/+$/, '');
  const pageUrl = base + '/items/' + encodeURIComponent(args.campaign) + '.html#token=' + encodeURIComponent(args.token);
  const failedResponses = [];
  let seen = { consoleErrors: [], pageErrors: [], cspViolations: [] };
  const deadline = Date.now() + args.timeoutMs;
  const left = () => Math.max(1, deadline - Date.now());
  const screenshotPath = resolve(args.screenshot);
  let browser = null, page = null;
  const result = { ok: false };

  const orderResponses = []; // "<method> <status> <order status or error code>", as the page received them
  const statusHistory = []; // per page load: the order statuses #result showed, in order
  const history = async () => {
    try { return await page.evaluate(() => (window.__buyerJourney || []).slice()); } catch (_) { return []; }
  };

  try {
    ({ browser, page, seen } = await openPage(browserTools, { width: 820, height: 1000 }, log));
    page.on('response', (res) => {
      const path = new URL(res.url()).pathname;
      if (res.status() >= 400) failedResponses.push(res.status() + ' ' + res.request().method() + ' ' + path);
      if (!path.startsWith('/api/v1/orders/')) return;
      const line = res.request().method() + ' ' + res.status();
      res.json().then((b) => orderResponses.push(line + ' ' + ((b && (b.status || b.code)) || '?')),
        () => orderResponses.push(line + ' ?'));
    });
    // Every change of the order status #result shows, in every page load (the page may go from
    // "queued" to "confirmed" within milliseconds: a mutation observer misses none).
    await page.addInitScript(() => {
      window.__buyerJourney = [];
      const install = () => {
        const r = document.getElementById('result');
        if (!r) return;
        const h = window.__buyerJourney;
        const push = (v) => { if (v && h[h.length - 1] !== v) h.push(v); };
        push(r.getAttribute('data-order-status'));
        new MutationObserver((records) => {
          // Each record holds the value before its change: the values after are the next records' old ones.
          records.slice(1).forEach((m) => push(m.oldValue));
          push(r.getAttribute('data-order-status'));
        }).observe(r, { attributes: true, attributeFilter: ['data-order-status'], attributeOldValue: true });
      };
      if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', install); else install();
    });

    log('opening ' + base + '/items/' + args.campaign + '.html#token=<buyer token>');
    const resp = await page.goto(pageUrl, { waitUntil: 'load', timeout: Math.min(15000, left()) });
    if (!resp || resp.status() !== 200) throw new Error('the item page answered ' + (resp ? resp.status() : 'nothing'));

    let attempt = 0;
    for (;;) {
      attempt++;
      if (!answers) {
        // No quiz: Grab, as soon as the page enables it.
        await page.waitForFunction(() => !document.getElementById('grab').disabled, null, { timeout: left(), polling: 50 });
        if (await page.isVisible('#quiz')) throw new Error('the page shows a quiz, but no --answers were given');
        await page.click('#grab', { timeout: Math.min(5000, left()) });
        log('pressed Grab (no quiz)');
      } else if (!(await answerQuestion(page, { answers, attempt, base, left, result, screenshotPath }))) {
        attempt--;
        continue;
      }

      // 3. The outcome: success, or a refusal the page shows.
      const kind = await page.waitForFunction(() => {
        const r = document.getElementById('result');
        const k = r.dataset.kind;
        return k && k !== 'info' ? k : false;
      }, null, { timeout: left(), polling: 50 }).then((h) => h.jsonValue());
      const text = ((await page.textContent('#result')) || '').trim();
      if (kind === 'success') {
        const id = await page.getAttribute('#result', 'data-order-id');
        const match = text.match(/\b[0-9a-f]{32}\b/);
        result.order_id = id || (match ? match[0] : null);
        result.result_text = text;
        result.attempts = attempt;
        if (!result.order_id) throw new Error('success shown without an order id: ' + JSON.stringify(text));
        break;
      }
      log('refused (' + kind + '): ' + text);
      result.refusals = (result.refusals || []).concat([text]);
      if (attempt >= args.attempts) throw new Error('no order after ' + attempt + ' attempts; last answer: ' + text);
    }
    if (args.afterGrab !== 'none') await journey(page, args, result, { left, base, screenshotPath, history, statusHistory });
    result.ok = true;
  } catch (e) {
    result.ok = false;
    result.error = String((e && e.message) || e).split('\n')[0];
    if (page) {
      try {
        result.page = {
          state: ((await page.textContent('#state', { timeout: 1000 })) || '').trim(),
          hint: ((await page.textContent('#hint', { timeout: 1000 })) || '').trim(),
          result: ((await page.textContent('#result', { timeout: 1000 })) || '').trim(),
        };
      } catch (_) { /* the page is gone */ }
    }
  }

  if (page && args.afterGrab !== 'none') {
    statusHistory.push(await history());
    result.status_history = statusHistory;
    result.order_responses = orderResponses;
  }
  if (page) await saveScreenshot(page, screenshotPath, result, log);
  if (browser) await browser.close().catch(() => {});

  result.console_errors = seen.consoleErrors;
  result.failed_responses = failedResponses;
  judgePage(result, seen);
  // Keep "ok" first in the line for humans reading logs.
  const { ok, ...rest } = result;
  finish({ ok, ...rest }, ok ? 0 : 1);
}

// Steps 1 and 2 of an attempt on a quiz campaign: answers the question shown and presses Grab; false
// when the question changed meanwhile (nothing was sent).
async function answerQuestion(page, { answers, attempt, base, left, result, screenshotPath }) {
  // 1. A question whose picture has loaded. The page removes the picture as soon as an answer is
  // sent (every attempt spends the question), so after a refusal this waits for the next one.
  await page.waitForFunction(() => {
    const img = document.getElementById('quiz-image');
    const src = img && img.getAttribute('src');
    return !!src && !img.hidden && img.complete && img.naturalWidth > 0;
  }, null, { timeout: left(), polling: 50 });
  const seenAt = Date.now();
  const src = await page.getAttribute('#quiz-image', 'src');
  const path = new URL(src, base + '/').pathname;
  const answer = answers[src] ?? answers[path];
  result.image_url = path;
  if (typeof answer !== 'string' || !answer) {
    throw new Error('the answers file has no answer for the quiz image ' + src);
  }
  const hintAtImage = await page.textContent('#hint');
  const enabledAtImage = await page.isEnabled('#grab');
  if (attempt === 1) {
    // A second picture, of the question as the buyer first sees it (kept next to the main one).
    const quizShot = screenshotPath.replace(/\.png$/i, '') + '-quiz.png';
    try {
      mkdirSync(dirname(quizShot), { recursive: true });
      await page.screenshot({ path: quizShot, fullPage: true, timeout: 5000 });
      result.quiz_screenshot = quizShot;
    } catch (e) { log('no quiz screenshot: ' + e.message); }
  }
  log('question ' + path + ' (attempt ' + attempt + '); grab enabled at once: ' + enabledAtImage + '; hint: ' + JSON.stringify(hintAtImage));

  // 2. The page enables Grab once the minimum answer time has passed.
  await page.waitForFunction(() => !document.getElementById('grab').disabled, null, { timeout: left(), polling: 50 });
  result.answer_wait_ms = Date.now() - seenAt;
  result.hint_before_answer = hintAtImage;
  await page.fill('#quiz-answer', answer, { timeout: Math.min(5000, left()) });
  if ((await page.getAttribute('#quiz-image', 'src')) !== src) {
    log('the question changed while typing; answering the new one');
    return false;
  }
  await page.click('#grab', { timeout: Math.min(5000, left()) });
  log('answered ' + JSON.stringify(answer) + ' and pressed Grab');
  return true;
}

// After the grab: "confirmed" with Pay and the time left, then pay ("paid") or not ("expired").
async function journey(page, args, result, { left, screenshotPath, history, statusHistory }) {
  // After a reload: the sale's details are back too (so the pictures show a complete page).
  const reload = async () => {
    statusHistory.push(await history());
    await page.reload({ waitUntil: 'load', timeout: Math.min(15000, left()) });
    await page.waitForFunction(() => !!document.getElementById('state').dataset.state, null,
      { timeout: Math.min(10000, left()), polling: 50 });
  };
  const statusIs = (want) => page.waitForSelector('#result[data-order-status="' + want + '"]',
    { state: 'attached', timeout: left() });
  // Pay offered: the block shown, the button enabled, a time left of the form m:ss (or h:mm:ss).
  const payOffered = async () => {
    await statusIs('confirmed');
    await page.waitForSelector('#pay #pay-button:enabled', { state: 'visible', timeout: left() });
    const text = ((await page.textContent('#pay-countdown')) || '').trim();
    if (!/^(\d+:)?\d{1,2}:\d{2}$/.test(text)) throw new Error('the time left to pay reads ' + JSON.stringify(text));
    return text;
  };

  result.pay_time_left = await payOffered();
  result.confirmed_text = ((await page.textContent('#result')) || '').trim();
  result.pay_button_text = ((await page.textContent('#pay-button')) || '').trim();
  log('confirmed; Pay offered with ' + result.pay_time_left + ' left');
  // The countdown runs: its text changes within about a second (bounded wait, no sleep).
  await page.waitForFunction((first) => document.getElementById('pay-countdown').textContent.trim() !== first,
    result.pay_time_left, { timeout: Math.min(3000, left()), polling: 100 });
  result.pay_time_left_later = ((await page.textContent('#pay-countdown')) || '').trim();
  const confirmedShot = screenshotPath.replace(/\.png$/i, '') + '-confirmed.png';
  try {
    mkdirSync(dirname(confirmedShot), { recursive: true });
    await page.screenshot({ path: confirmedShot, fullPage: true, timeout: 5000 });
    result.confirmed_screenshot = confirmedShot;
  } catch (e) { log('no confirmed screenshot: ' + e.message); }

  if (args.reload) {
    // Back on the page with the order id kept for this buyer: Pay again, with the time left.
    await reload();
    result.pay_time_left_after_reload = await payOffered();
    log('reloaded: Pay offered again with ' + result.pay_time_left_after_reload + ' left');
  }

  if (args.afterGrab === 'pay') {
    await page.click('#pay-button', { timeout: Math.min(5000, left()) });
    log('pressed Pay');
    await statusIs('paid');
    await page.waitForSelector('#pay', { state: 'hidden', timeout: Math.min(5000, left()) });
    result.paid_text = ((await page.textContent('#result')) || '').trim();
    if (!/\bpaid\b/.test(result.paid_text)) throw new Error('"paid" not shown: ' + JSON.stringify(result.paid_text));
    if (args.reload) {
      await reload();
      await statusIs('paid');
      if (await page.isVisible('#pay')) throw new Error('Pay is offered again after a reload of a paid order');
      result.paid_text_after_reload = ((await page.textContent('#result')) || '').trim();
      log('reloaded: still paid');
    }
  } else {
    log('not paying; waiting for the time to run out');
    await statusIs('expired');
    await page.waitForSelector('#pay', { state: 'hidden', timeout: Math.min(5000, left()) });
    result.expired_text = ((await page.textContent('#result')) || '').trim();
    if (!/\bexpired\b/.test(result.expired_text)) throw new Error('"expired" not shown: ' + JSON.stringify(result.expired_text));
    // The unit went back on sale: the buyer may grab again. The button comes back once the page has its
    // grab path again (fetched after the expiry), so wait for it, bounded.
    result.grab_enabled_after_expiry = await page
      .waitForSelector('#grab:not([disabled])', { timeout: Math.min(5000, left()) })
      .then(() => true, () => false);
  }
  result.final_status = await page.getAttribute('#result', 'data-order-status');

  // What the buyer saw, in order: the first load began with "queued" (the grab's own answer), then
  // "confirmed"; the last status is the final one.
  const seenStatuses = statusHistory.concat([await history()]);
  const first = seenStatuses[0] || [];
  if (first[0] !== 'queued' || first.indexOf('confirmed') < 1) {
    throw new Error('the page did not show queued then confirmed: ' + JSON.stringify(seenStatuses));
  }
  const last = seenStatuses[seenStatuses.length - 1];
  const want = args.afterGrab === 'pay' ? 'paid' : 'expired';
  if (last[last.length - 1] !== want) throw new Error('the page ended at ' + JSON.stringify(seenStatuses) + ', not ' + want);
}

main().catch((e) => finish({ ok: false, error: 'unexpected: ' + String((e && e.stack) || e) }, 1));

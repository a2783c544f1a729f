#!/usr/bin/env node
// A buyer in headless Chromium: opens the item page with a buyer token, waits for the quiz picture,
// looks its answer up in the load-test export, waits until the page lets it answer (the minimum
// answer time), types the answer, presses Grab and waits for the page to show the order.
//
//   node buyer-quiz.mjs --url <base> --campaign <id> --token <buyer jwt> \
//        --answers <quiz-answers.json> --screenshot <png path> [--timeout-ms 30000] [--attempts 3]
//
// <quiz-answers.json> is `GET /admin/v1/campaigns/{id}/quiz-answers` as saved:
// {"answers": {"<image_url>": "<answer>"}}.
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
  const out = parseOptions(argv, ['url', 'campaign', 'token', 'answers', 'screenshot', 'timeout-ms', 'attempts'],
    ['url', 'campaign', 'token', 'answers', 'screenshot']);
  out.timeoutMs = Number(out['timeout-ms'] || 30000);
  out.attempts = Number(out.attempts || 3);
  if (!(out.timeoutMs > 0) || !(out.attempts >= 1)) throw new Error('bad --timeout-ms or --attempts');
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

  let answers;
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

  const base = args.url.replace(/\/+$/, '');
  const pageUrl = base + '/items/' + encodeURIComponent(args.campaign) + '.html#token=' + encodeURIComponent(args.token);
  const failedResponses = [];
  let seen = { consoleErrors: [], pageErrors: [], cspViolations: [] };
  const deadline = Date.now() + args.timeoutMs;
  const left = () => Math.max(1, deadline - Date.now());
  const screenshotPath = resolve(args.screenshot);
  let browser = null, page = null;
  const result = { ok: false };

  try {
    ({ browser, page, seen } = await openPage(browserTools, { width: 820, height: 1000 }, log));
    page.on('response', (res) => {
      if (res.status() >= 400) failedResponses.push(res.status() + ' ' + res.request().method() + ' ' + new URL(res.url()).pathname);
    });

    log('opening ' + base + '/items/' + args.campaign + '.html#token=<buyer token>');
    const resp = await page.goto(pageUrl, { waitUntil: 'load', timeout: Math.min(15000, left()) });
    if (!resp || resp.status() !== 200) throw new Error('the item page answered ' + (resp ? resp.status() : 'nothing'));

    let attempt = 0;
    for (;;) {
      attempt++;
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
        attempt--;
        continue;
      }
      await page.click('#grab', { timeout: Math.min(5000, left()) });
      log('answered ' + JSON.stringify(answer) + ' and pressed Grab');

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

  if (page) await saveScreenshot(page, screenshotPath, result, log);
  if (browser) await browser.close().catch(() => {});

  result.console_errors = seen.consoleErrors;
  result.failed_responses = failedResponses;
  judgePage(result, seen);
  // Keep "ok" first in the line for humans reading logs.
  const { ok, ...rest } = result;
  finish({ ok, ...rest }, ok ? 0 : 1);
}

main().catch((e) => finish({ ok: false, error: 'unexpected: ' + String((e && e.stack) || e) }, 1));

#!/usr/bin/env node
// A buyer of a waiting-room campaign in headless Chromium: opens the item page with a buyer token, lets
// the page join the line (before the start too: the pre-queue), records every place, estimated wait and
// progress the page shows while the buyer waits, waits for the admission, then (like buyer-quiz.mjs)
// answers the quiz when there is one (the answer looked up in the load-test export), presses Grab and
// waits for the page to show the order ("queued", then with --until confirmed "confirmed").
// With --expect sold_out it instead waits for the line to say "Sold out" and checks the page shows it
// with Grab disabled.
//
//   node buyer-queue.mjs --url <base> --campaign <id> --token <buyer jwt> --screenshot <png path> \
//        [--answers <quiz-answers.json>] [--timeout-ms 60000] [--attempts 3] \
//        [--expect order|sold_out] [--until queued|confirmed]
//
// <quiz-answers.json> is `GET /admin/v1/campaigns/{id}/quiz-answers` as saved:
// {"answers": {"<image_url>": "<answer>"}}; without --answers the campaign must have no quiz.
// Defaults: --timeout-ms 60000 (the whole wait, the line included), --attempts 3 (grabs refused before
// giving up), --expect order, --until confirmed.
//
// Prints one JSON line and exits 0 on success, 1 on failure ({"ok":false,"error":...}, with "page": the
// texts of #state, #hint, #result and #queue-position, and the fields below as far as they got). Fields:
//   ok, error?                 success; the reason of a failure
//   joined                     the page joined the line (#queue showed waiting, admitted or sold out)
//   first_queue_state          the line's first answer as the page showed it: waiting|admitted|sold_out
//   pre_queue_seen             the page showed the pre-queue ("drawn at random when the sale starts")
//   pre_queue_text             its first text, e.g. "Your place is drawn at random ...; expected place about 7 of 9."
//   pre_queue_positions        the expected places shown before the start, in order (consecutive repeats dropped)
//   positions                  every place shown, in order: [{"at_ms","phase","position","text"}] (at_ms since
//                              the page was opened; phase pre_queue|queue; consecutive repeats dropped)
//   position_numbers           the places shown after the draw (phase "queue"), in order, repeats dropped
//   counted_down               position_numbers has 2+ entries, never rises and ends lower than it began
//   position_increases         how many times a shown place (phase "queue") rose
//   progress_visible           a progress bar (#queue-progress) was visible while waiting
//   progress_values            its determinate values (0-100) in order, repeats dropped
//   eta_visible                an estimated wait (#queue-eta) was visible while waiting
//   eta_texts                  the estimates shown, in order, repeats dropped (at most 100)
//   grab_enabled_while_waiting how many observed page states had Grab enabled while not admitted (want 0)
//   admitted                   the page reached the admission; admitted_after_ms: when (since opened)
//   admitted_text              #result right after the admission ("It's your turn! ...")
//   sold_out_text, sold_out_note, sold_out_grab_disabled   (--expect sold_out) what the panel said
//   queue_requests             {"join": n, "poll": n}: the page's POST and GET .../queue
//   queue_responses            ["POST 200 waiting", "GET 200 waiting x12", "GET 503 unavailable", ...]
//                              (state or error code; consecutive repeats counted)
//   ticket_replaced            polls whose answer carried a newer ticket (the rank drawn at the start)
//   grab_path_requests         GET .../grab-path requests (a waiting-room page must make none: want 0)
//   grab_posts                 the paths the grabs were POSTed to, in order (the admission's grab_path)
//   image_url, answer_wait_ms, hint_before_answer, quiz_screenshot   (quiz campaigns) as in buyer-quiz.mjs
//   attempts, refusals?        grabs pressed; the page's texts of refused ones
//   order_id, result_text      the order the page showed and its text
//   order_status               #result[data-order-status] at the end ("queued" or "confirmed")
//   status_history             the order statuses #result showed, in order (e.g. ["queued","confirmed"])
//   queue_samples              the page states observed (at most 1000, the last ones): {"at_ms","state",
//                              "phase","shown","text","position","eta","eta_s","progress","grab_enabled"}
//   queue_screenshot           a picture while waiting (`<screenshot>-queue.png`), when the page waited
//   screenshot                 the final state (--screenshot)
//   console_errors, failed_responses   every console error; every HTTP answer >= 400 ("503 GET /api/...")
//   uncaught_exceptions?, csp_violations?   (then ok is false)
//
// Browser: Debian's /usr/bin/chromium (SECKILL_CHROMIUM overrides), driven by playwright-core from
// scripts/browser/node_modules (bash scripts/install-browser.sh installs both). Every wait is bounded,
// and the whole run is cut off after --timeout-ms plus 25 s.
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { hardStop, judgePage, loadChromium, openPage, parseOptions, runner, saveScreenshot } from './harness.mjs';

const { log, finish } = runner('buyer-queue');
const SAMPLES_KEPT = 1000;

function parseArgs(argv) {
  const out = parseOptions(argv, ['url', 'campaign', 'token', 'answers', 'screenshot', 'timeout-ms', 'attempts',
    'expect', 'until'], ['url', 'campaign', 'token', 'screenshot']);
  out.timeoutMs = Number(out['timeout-ms'] || 60000);
  out.attempts = Number(out.attempts || 3);
  if (!(out.timeoutMs > 0) || !(out.attempts >= 1)) throw new Error('bad --timeout-ms or --attempts');
  out.expect = out.expect || 'order';
  if (!['order', 'sold_out'].includes(out.expect)) throw new Error('--expect is order or sold_out');
  out.until = out.until || 'confirmed';
  if (!['queued', 'confirmed'].includes(out.until)) throw new Error('--until is queued or confirmed');
  return out;
}

// Installed in every page load: records each change of the waiting-room panel and of Grab, and every
// order status #result shows (a mutation observer misses none, however fast they follow each other).
function recordPage(max) {
  const j = (window.__queueJourney = { samples: [], statuses: [] });
  const install = () => {
    const byId = (id) => document.getElementById(id);
    const q = byId('queue'), grab = byId('grab'), result = byId('result');
    if (!q || !grab || !result) return;
    const visible = (e) => !!e && e.getClientRects().length > 0; // false inside a hidden panel too
    let last = '';
    const snap = () => {
      const pos = byId('queue-position'), eta = byId('queue-eta'), bar = byId('queue-progress');
      const s = {
        at_ms: Date.now(),
        state: q.dataset.state || '',
        phase: q.dataset.phase || '',
        shown: visible(q),
        text: visible(pos) ? pos.textContent.trim() : '',
        position: visible(pos) && pos.dataset.position ? Number(pos.dataset.position) : null,
        eta: visible(eta) ? eta.textContent.trim() : '',
        eta_s: visible(eta) && eta.dataset.etaS ? Number(eta.dataset.etaS) : null,
        progress: visible(bar) ? (bar.hasAttribute('value') ? Number(bar.value) : 'indeterminate') : null,
        grab_enabled: !grab.disabled,
      };
      const key = JSON.stringify(Object.assign({}, s, { at_ms: 0 }));
      if (key === last) return;
      last = key;
      j.samples.push(s);
      if (j.samples.length > max) j.samples.splice(0, j.samples.length - max);
    };
    snap();
    const mo = new MutationObserver(snap);
    mo.observe(q, { subtree: true, childList: true, characterData: true, attributes: true });
    mo.observe(grab, { attributes: true, attributeFilter: ['disabled'] });
    const push = (v) => { if (v && j.statuses[j.statuses.length - 1] !== v) j.statuses.push(v); };
    push(result.getAttribute('data-order-status'));
    new MutationObserver((records) => {
      // Each record holds the value before its change: the values after are the next records' old ones.
      records.slice(1).forEach((m) => push(m.oldValue));
      push(result.getAttribute('data-order-status'));
    }).observe(result, { attributes: true, attributeFilter: ['data-order-status'], attributeOldValue: true });
  };
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', install); else install();
}

// What the samples say about the wait (see the fields in the header).
function summarize(samples, openedAt, result) {
  const rel = (s) => Object.assign({}, s, { at_ms: s.at_ms - openedAt });
  const waiting = samples.filter((s) => s.state !== 'admitted' && s.state !== 'off');
  const positions = [];
  for (const s of samples) {
    if (s.position === null) continue;
    const p = positions[positions.length - 1];
    if (p && p.phase === s.phase && p.position === s.position) continue;
    positions.push({ at_ms: s.at_ms - openedAt, phase: s.phase, position: s.position, text: s.text });
  }
  const numbers = (phase) => positions.filter((p) => p.phase === phase).map((p) => p.position)
    .filter((n, i, a) => i === 0 || a[i - 1] !== n);
  const nums = numbers('queue');
  let increases = 0;
  for (let i = 1; i < nums.length; i++) if (nums[i] > nums[i - 1]) increases++;
  const distinct = (arr) => arr.filter((v, i, a) => i === 0 || a[i - 1] !== v);
  const pre = samples.find((s) => s.shown && s.phase === 'pre_queue' && s.text);
  Object.assign(result, {
    pre_queue_seen: !!pre,
    pre_queue_text: pre ? pre.text : null,
    pre_queue_positions: numbers('pre_queue'),
    positions,
    position_numbers: nums,
    counted_down: nums.length >= 2 && increases === 0 && nums[nums.length - 1] < nums[0],
    position_increases: increases,
    progress_visible: waiting.some((s) => s.shown && s.progress !== null),
    progress_values: distinct(waiting.filter((s) => typeof s.progress === 'number').map((s) => s.progress)),
    eta_visible: waiting.some((s) => s.shown && s.eta !== ''),
    eta_texts: distinct(waiting.filter((s) => s.eta !== '').map((s) => s.eta)).slice(0, 100),
    grab_enabled_while_waiting: waiting.filter((s) => s.grab_enabled).length,
    queue_samples: samples.slice(-SAMPLES_KEPT).map(rel),
  });
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
  const queuePath = '/api/v1/campaigns/' + encodeURIComponent(args.campaign) + '/queue';
  const pageUrl = base + '/items/' + encodeURIComponent(args.campaign) + '.html#token=' + encodeURIComponent(args.token);
  const failedResponses = [];
  const queueResponses = []; // [line, count]
  const queueRequests = { join: 0, poll: 0 };
  const grabPosts = [];
  let grabPathRequests = 0, ticketReplaced = 0;
  let seen = { consoleErrors: [], pageErrors: [], cspViolations: [] };
  const deadline = Date.now() + args.timeoutMs;
  const left = () => Math.max(1, deadline - Date.now());
  const screenshotPath = resolve(args.screenshot);
  const stem = screenshotPath.replace(/\.png$/i, '');
  let browser = null, page = null, openedAt = Date.now();
  const result = { ok: false, joined: false, admitted: false };
  const text = async (sel) => ((await page.textContent(sel, { timeout: Math.min(2000, left()) })) || '').trim();
  const queueState = () => page.evaluate(() => document.getElementById('queue').dataset.state || '');
  const shot = async (path, key) => {
    try {
      mkdirSync(dirname(path), { recursive: true });
      await page.screenshot({ path, fullPage: true, timeout: 5000 });
      result[key] = path;
    } catch (e) { log('no ' + key + ': ' + e.message); }
  };

  try {
    ({ browser, page, seen } = await openPage(browserTools, { width: 820, height: 1000 }, log));
    page.on('request', (req) => {
      const path = new URL(req.url()).pathname;
      if (req.method() === 'GET' && path.endsWith('/grab-path')) grabPathRequests++;
      if (req.method() === 'POST' && /\/grab(\/|$)/.test(path)) grabPosts.push(path);
      if (path === queuePath) queueRequests[req.method() === 'POST' ? 'join' : 'poll']++;
    });
    page.on('response', (res) => {
      const path = new URL(res.url()).pathname;
      if (res.status() >= 400) failedResponses.push(res.status() + ' ' + res.request().method() + ' ' + path);
      if (path !== queuePath) return;
      const method = res.request().method();
      const note = (what) => {
        const line = method + ' ' + res.status() + ' ' + what;
        const lastOne = queueResponses[queueResponses.length - 1];
        if (lastOne && lastOne[0] === line) lastOne[1]++; else queueResponses.push([line, 1]);
      };
      res.json().then((b) => {
        if (method === 'GET' && res.status() === 200 && b && typeof b.ticket === 'string') ticketReplaced++;
        note((b && (b.state || b.code)) || '?');
      }, () => note('?'));
    });
    await page.addInitScript(recordPage, SAMPLES_KEPT * 5);

    log('opening ' + base + '/items/' + args.campaign + '.html#token=<buyer token>');
    openedAt = Date.now();
    const resp = await page.goto(pageUrl, { waitUntil: 'load', timeout: Math.min(15000, left()) });
    if (!resp || resp.status() !== 200) throw new Error('the item page answered ' + (resp ? resp.status() : 'nothing'));

    // 1. Joined: the line's first answer is shown (or the page has no waiting room at all).
    const first = await page.waitForFunction(() => {
      const st = document.getElementById('queue').dataset.state;
      if (['waiting', 'admitted', 'sold_out', 'expired', 'ended'].includes(st)) return st;
      // The sale is loaded (its state shown) and still no line: not a waiting-room page.
      return st === 'off' && document.getElementById('state').dataset.state ? 'off' : false;
    }, null, { timeout: left(), polling: 50 }).then((h) => h.jsonValue());
    if (first === 'off') throw new Error('the page shows no waiting room (is "waiting_room" true for this campaign, and the token accepted?)');
    result.joined = ['waiting', 'admitted', 'sold_out'].includes(first);
    result.first_queue_state = first;
    log('joined the line: ' + first);

    // 2. While waiting: a picture of the panel with a place shown.
    if (first === 'waiting') {
      const shown = await page.waitForFunction(() => {
        const q = document.getElementById('queue');
        if (q.dataset.state !== 'waiting') return 'moved on';
        return !q.hidden && document.getElementById('queue-position').dataset.position ? 'shown' : false;
      }, null, { timeout: Math.min(10000, left()), polling: 50 }).then((h) => h.jsonValue(), () => 'no place shown');
      if (shown === 'shown') {
        log('waiting: ' + (await text('#queue-position')));
        await shot(stem + '-queue.png', 'queue_screenshot');
      }
    }

    if (args.expect === 'sold_out') {
      // 3'. The line says sold out: shown at once, Grab disabled.
      const st = await page.waitForFunction(() => {
        const v = document.getElementById('queue').dataset.state;
        return ['sold_out', 'admitted', 'expired', 'ended'].includes(v) ? v : false;
      }, null, { timeout: left(), polling: 50 }).then((h) => h.jsonValue());
      if (st !== 'sold_out') throw new Error('expected the line to say sold out, but it says ' + st);
      await page.waitForSelector('#queue:not([hidden])', { state: 'visible', timeout: Math.min(5000, left()) });
      result.sold_out_text = await text('#queue-position');
      result.sold_out_note = await text('#queue-note');
      result.sold_out_grab_disabled = await page.isDisabled('#grab');
      if (!/sold out/i.test(result.sold_out_text)) throw new Error('"Sold out" not shown: ' + JSON.stringify(result.sold_out_text));
      if (!result.sold_out_grab_disabled) throw new Error('Grab is enabled although the line is sold out');
      log('sold out shown: ' + result.sold_out_text);
    } else {
      // 3. The admission: the panel goes away and the page has the grab path.
      const st = await page.waitForFunction(() => {
        const v = document.getElementById('queue').dataset.state;
        return ['admitted', 'expired', 'ended'].includes(v) ? v : false;
      }, null, { timeout: left(), polling: 50 }).then((h) => h.jsonValue());
      if (st !== 'admitted') throw new Error('the buyer was not admitted: the line says ' + st + ' (' + (await text('#result')) + ')');
      result.admitted = true;
      result.admitted_after_ms = Date.now() - openedAt;
      result.admitted_text = await text('#result');
      log('admitted after ' + result.admitted_after_ms + ' ms: ' + JSON.stringify(result.admitted_text));

      // 4. The quiz (if any) and the grab, as buyer-quiz.mjs does.
      let attempt = 0;
      for (;;) {
        attempt++;
        if (!answers) {
          await page.waitForFunction(() => !document.getElementById('grab').disabled, null, { timeout: left(), polling: 50 });
          if (await page.isVisible('#quiz')) throw new Error('the page shows a quiz, but no --answers were given');
          await page.click('#grab', { timeout: Math.min(5000, left()) });
          log('pressed Grab (no quiz)');
        } else if (!(await answerQuestion(page, { answers, attempt, base, left, result, stem }))) {
          attempt--;
          continue;
        }
        // The outcome: an order, or a refusal the page shows ("It's your turn" is info: not an outcome).
        const kind = await page.waitForFunction(() => {
          const r = document.getElementById('result');
          const k = r.dataset.kind;
          return k && k !== 'info' && r.textContent !== 'Sending your request…' ? k : false;
        }, null, { timeout: left(), polling: 50 }).then((h) => h.jsonValue());
        const shownText = await text('#result');
        if (kind === 'success') {
          const id = await page.getAttribute('#result', 'data-order-id');
          const match = shownText.match(/\b[0-9a-f]{32}\b/);
          result.order_id = id || (match ? match[0] : null);
          result.result_text = shownText;
          result.attempts = attempt;
          if (!result.order_id) throw new Error('success shown without an order id: ' + JSON.stringify(shownText));
          break;
        }
        log('refused (' + kind + '): ' + shownText);
        result.refusals = (result.refusals || []).concat([shownText]);
        if (attempt >= args.attempts) throw new Error('no order after ' + attempt + ' attempts; last answer: ' + shownText);
      }

      // 5. The order status: "queued" (the grab's own answer), then "confirmed" when asked for.
      await page.waitForSelector('#result[data-order-status="' + args.until + '"]', { state: 'attached', timeout: left() });
      result.order_status = await page.getAttribute('#result', 'data-order-status');
      result.result_text = await text('#result');
      log('order ' + result.order_id + ' shown as ' + result.order_status);
    }
    result.ok = true;
  } catch (e) {
    result.ok = false;
    result.error = String((e && e.message) || e).split('\n')[0];
    if (page) {
      try {
        result.page = {
          state: await text('#state'),
          hint: await text('#hint'),
          result: await text('#result'),
          queue_state: await queueState(),
          queue_position: await text('#queue-position'),
          queue_note: await text('#queue-note'),
        };
      } catch (_) { /* the page is gone */ }
    }
  }

  if (page) {
    try {
      const journey = await page.evaluate(() => window.__queueJourney || { samples: [], statuses: [] });
      summarize(journey.samples, openedAt, result);
      result.status_history = journey.statuses;
    } catch (e) { log('no journey from the page: ' + e.message); }
    await saveScreenshot(page, screenshotPath, result, log);
  }
  if (browser) await browser.close().catch(() => {});

  result.queue_requests = queueRequests;
  result.queue_responses = queueResponses.map(([line, n]) => (n > 1 ? line + ' x' + n : line));
  result.ticket_replaced = ticketReplaced;
  result.grab_path_requests = grabPathRequests;
  result.grab_posts = grabPosts;
  result.console_errors = seen.consoleErrors;
  result.failed_responses = failedResponses;
  judgePage(result, seen);
  // Keep "ok" first in the line for humans reading logs.
  const { ok, ...rest } = result;
  finish({ ok, ...rest }, ok ? 0 : 1);
}

// One quiz attempt: answers the question shown and presses Grab; false when the question changed
// meanwhile (nothing was sent). As in buyer-quiz.mjs.
async function answerQuestion(page, { answers, attempt, base, left, result, stem }) {
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
  if (typeof answer !== 'string' || !answer) throw new Error('the answers file has no answer for the quiz image ' + src);
  const hintAtImage = await page.textContent('#hint');
  if (attempt === 1) {
    const quizShot = stem + '-quiz.png';
    try {
      mkdirSync(dirname(quizShot), { recursive: true });
      await page.screenshot({ path: quizShot, fullPage: true, timeout: 5000 });
      result.quiz_screenshot = quizShot;
    } catch (e) { log('no quiz screenshot: ' + e.message); }
  }
  log('question ' + path + ' (attempt ' + attempt + '); hint: ' + JSON.stringify(hintAtImage));
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

main().catch((e) => finish({ ok: false, error: 'unexpected: ' + String((e && e.stack) || e) }, 1));

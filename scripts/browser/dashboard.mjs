#!/usr/bin/env node
// An operator in headless Chromium: opens the live dashboard (/admin/dashboard), first signs in with
// a wrong token (the page must say 401 and show the form again), then with the admin token, waits
// until every campaign's row shows numbers and its uPlot charts have drawn, reads the numbers the
// page shows ("first"), and writes them to --ready-file. It then waits for --go-file to exist (the
// caller has stopped selling and everything is stored), lets the page refresh twice more, reads the
// numbers again ("final") and saves a screenshot.
//
//   node dashboard.mjs --url <base> --token <admin token> --campaigns <id,id,...> \
//        --screenshot <png path> --ready-file <path> --go-file <path> [--timeout-ms 40000]
//
// Prints one JSON line and exits 0 on success:
//   {"ok":true,"first":{"<id>":{"sold":..,...,"rejected":{"<code>":n}}},"final":{...},"ticks":n,...};
// on any failure prints {"ok":false,"error":...} (still saving a screenshot when it can) and exits 1.
// Fails too when the page had an uncaught exception or a Content-Security-Policy violation, when the
// token appeared in a URL, or when an admin API request went without it.
//
// Browser: Debian's /usr/bin/chromium (SECKILL_CHROMIUM overrides), driven by playwright-core from
// scripts/browser/node_modules (bash scripts/install-browser.sh installs both). Every wait is bounded,
// and the whole run is cut off after --timeout-ms plus 20 s.
import { existsSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { hardStop, judgePage, loadChromium, openPage, parseOptions, runner, saveScreenshot } from './harness.mjs';

const { log, finish } = runner('dashboard');

function parseArgs(argv) {
  const out = parseOptions(argv, ['url', 'token', 'campaigns', 'screenshot', 'ready-file', 'go-file', 'timeout-ms'],
    ['url', 'token', 'campaigns', 'screenshot', 'ready-file', 'go-file']);
  out.campaignIds = out.campaigns.split(',').filter(Boolean);
  out.timeoutMs = Number(out['timeout-ms'] || 40000);
  if (!(out.timeoutMs > 0) || !out.campaignIds.length) throw new Error('bad --timeout-ms or --campaigns');
  return out;
}

// The numbers the page shows, per campaign row, parsed from the text of the cells.
function readNumbers(ids) {
  const fields = ['stock_total', 'sold', 'remaining', 'reserved', 'orders_queued', 'orders_persisted',
    'orders_paid', 'orders_expired', 'units_returned', 'rejected_total', 'requests_per_s'];
  const num = (text) => {
    const t = (text || '').trim();
    if (t === '' || t === '–') return null;
    const n = Number(t);
    return Number.isFinite(n) ? n : t;
  };
  const out = {};
  for (const id of ids) {
    const row = document.querySelector('tr[data-campaign="' + CSS.escape(id) + '"]');
    if (!row) continue;
    const r = {};
    for (const f of fields) {
      const td = row.querySelector('[data-field="' + f + '"]');
      r[f] = td ? num(td.textContent) : undefined;
    }
    const state = row.querySelector('[data-field="state"]');
    r.state = state ? state.dataset.state : null;
    r.rejected = {};
    for (const span of row.querySelectorAll('[data-field="rejected"] [data-code]')) {
      // Shown as "<code> <n>": the number the operator sees.
      const parts = span.textContent.trim().split(/\s+/);
      r.rejected[span.dataset.code] = Number(parts[parts.length - 1]);
    }
    out[id] = r;
  }
  return out;
}

// Every chart of the named campaigns: a uPlot canvas with a size and some drawn pixels.
function chartsDrawn(ids) {
  const out = {};
  for (const id of ids) {
    const card = document.querySelector('[data-chart-campaign="' + CSS.escape(id) + '"]');
    const canvases = card ? Array.from(card.querySelectorAll('.uplot canvas')) : [];
    out[id] = canvases.map((c) => {
      let painted = 0;
      try {
        const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        for (let i = 3; i < px.length; i += 4) if (px[i] !== 0) painted++;
      } catch (_) { painted = -1; }
      return { width: c.width, height: c.height, painted };
    });
  }
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
  hardStop(args.timeoutMs + 20000, finish);
  const browserTools = await loadChromium(finish);
  if (!browserTools) return;

  const base = args.url.replace(/\/+$/, '');
  const ids = args.campaignIds;
  let seen = { consoleErrors: [], pageErrors: [], cspViolations: [] };
  const tokenLeaks = [];
  const unauthenticated = [];
  let adminRequests = 0;
  const deadline = Date.now() + args.timeoutMs;
  const left = () => Math.max(1, deadline - Date.now());
  const screenshotPath = resolve(args.screenshot);
  let browser = null, page = null;
  const result = { ok: false };
  const wrongToken = 'wrong-token-' + Date.now();

  try {
    ({ browser, page, seen } = await openPage(browserTools, { width: 1400, height: 1100 }, log));
    page.on('request', (req) => {
      const url = req.url();
      if (url.includes(args.token) || url.includes(wrongToken)) tokenLeaks.push(url);
      const path = new URL(url).pathname;
      if (path.startsWith('/admin/v1/')) {
        adminRequests++;
        if (!/^Bearer .+/.test(req.headers()['authorization'] || '')) unauthenticated.push(req.method() + ' ' + path);
      }
    });

    log('opening ' + base + '/admin/dashboard');
    const resp = await page.goto(base + '/admin/dashboard', { waitUntil: 'load', timeout: Math.min(15000, left()) });
    if (!resp || resp.status() !== 200) throw new Error('the dashboard answered ' + (resp ? resp.status() : 'nothing'));
    const csp = (await resp.allHeaders())['content-security-policy'] || '';
    if (!csp.includes("default-src 'self'")) throw new Error('the dashboard has no CSP default-src self: ' + JSON.stringify(csp));
    await page.waitForSelector('#login:not([hidden])', { timeout: Math.min(10000, left()) });

    // 1. A wrong token: a clear 401 message and the form again.
    await page.fill('#token', wrongToken);
    await page.click('#sign-in');
    await page.waitForFunction(() => {
      const m = document.getElementById('message');
      return !m.hidden && m.dataset.kind === 'error' && /401/.test(m.textContent) &&
        !document.getElementById('login').hidden && document.getElementById('dashboard').hidden;
    }, null, { timeout: Math.min(10000, left()), polling: 50 });
    result.unauthorized_message = (await page.textContent('#message')).trim();
    const kept = await page.evaluate(() => sessionStorage.getItem('seckill.admin.token'));
    if (kept) throw new Error('a refused token stayed in sessionStorage');
    log('wrong token refused: ' + JSON.stringify(result.unauthorized_message));

    // 2. The admin token: rows with numbers for every campaign, and drawn charts.
    await page.fill('#token', args.token);
    await page.click('#sign-in');
    const stored = await page.evaluate(() => sessionStorage.getItem('seckill.admin.token'));
    if (stored !== args.token) throw new Error('the token is not kept in sessionStorage');
    await page.waitForFunction((wanted) => {
      if (Number(document.body.dataset.ticks || 0) < 2) return false;
      return wanted.every((id) => {
        const row = document.querySelector('tr[data-campaign="' + CSS.escape(id) + '"]');
        const sold = row && row.querySelector('[data-field="sold"]');
        const card = document.querySelector('[data-chart-campaign="' + CSS.escape(id) + '"]');
        return sold && /^\d+$/.test(sold.textContent.trim()) && card && card.querySelectorAll('.uplot canvas').length >= 2;
      });
    }, ids, { timeout: left(), polling: 100 });
    result.first = await page.evaluate(readNumbers, ids);
    result.first_ticks = Number(await page.evaluate(() => document.body.dataset.ticks));
    result.charts = await page.evaluate(chartsDrawn, ids);
    for (const id of ids) {
      const charts = result.charts[id] || [];
      if (charts.length < 2 || charts.some((c) => !(c.width > 0 && c.height > 0 && c.painted > 0))) {
        throw new Error('the charts of ' + id + ' did not draw: ' + JSON.stringify(charts));
      }
    }
    log('rows and charts shown: ' + JSON.stringify(result.first));
    writeFileSync(args['ready-file'], JSON.stringify(result.first) + '\n');

    // 3. The caller sells meanwhile; once it says so, two more refreshes and the final numbers.
    while (!existsSync(args['go-file'])) {
      if (Date.now() > deadline) throw new Error('no ' + args['go-file'] + ' within the time limit');
      await new Promise((r) => setTimeout(r, 100));
    }
    const t0 = Number(await page.evaluate(() => document.body.dataset.ticks));
    await page.waitForFunction((n) => Number(document.body.dataset.ticks || 0) >= n, t0 + 2, { timeout: left(), polling: 50 });
    result.final = await page.evaluate(readNumbers, ids);
    result.ticks = Number(await page.evaluate(() => document.body.dataset.ticks));
    result.hot = await page.evaluate(() => Array.from(document.querySelectorAll('#hot [data-hot-campaign]')).map((e) => e.dataset.hotCampaign));
    result.status = ((await page.textContent('#status')) || '').trim();
    log('final: ' + JSON.stringify(result.final));
    if (tokenLeaks.length) throw new Error('the token appeared in a URL: ' + tokenLeaks[0]);
    if (unauthenticated.length) throw new Error('admin requests without a bearer token: ' + unauthenticated.join(', '));
    if (page.url().includes(args.token)) throw new Error('the token is in the page URL');
    result.admin_requests = adminRequests;
    result.ok = true;
  } catch (e) {
    result.ok = false;
    result.error = String((e && e.message) || e).split('\n')[0];
    if (page) {
      try {
        result.page = {
          status: ((await page.textContent('#status', { timeout: 1000 })) || '').trim(),
          message: ((await page.textContent('#message', { timeout: 1000 })) || '').trim(),
          ticks: await page.evaluate(() => document.body.dataset.ticks),
        };
      } catch (_) { /* the page is gone */ }
    }
  }

  if (page) await saveScreenshot(page, screenshotPath, result, log);
  if (browser) await browser.close().catch(() => {});

  // The 401 of the wrong token is expected; any other console error is reported.
  result.console_errors = seen.consoleErrors.filter((t) => !/401/.test(t));
  judgePage(result, seen);
  const { ok, ...rest } = result;
  finish({ ok, ...rest }, ok ? 0 : 1);
}

main().catch((e) => finish({ ok: false, error: 'unexpected: ' + String((e && e.stack) || e) }, 1));

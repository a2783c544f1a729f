// What the browser scripts (buyer-quiz.mjs, dashboard.mjs) share: the one-JSON-line result and log,
// option parsing, the hard stop, loading Debian's Chromium through playwright-core, and a page that
// records its console errors, uncaught exceptions and Content-Security-Policy violations.
import { existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

// `log` writes to standard error with the time since start; `finish` prints the result line once.
export function runner(name) {
  const started = Date.now();
  const log = (msg) => process.stderr.write('[' + name + ' +' + (Date.now() - started) + 'ms] ' + msg + '\n');
  let printed = false;
  const finish = (result, code) => {
    if (!printed) {
      printed = true;
      process.stdout.write(JSON.stringify(result) + '\n');
    }
    process.exitCode = code;
  };
  return { log, finish };
}

// `--key value` or `--key=value` for the keys of `want`; those of `required` must be there.
export function parseOptions(argv, want, required) {
  const allowed = new Set(want);
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error('unexpected argument ' + JSON.stringify(a));
    let key = a.slice(2), value;
    const eq = key.indexOf('=');
    if (eq >= 0) { value = key.slice(eq + 1); key = key.slice(0, eq); } else { value = argv[++i]; }
    if (!allowed.has(key)) throw new Error('unknown option --' + key);
    if (value === undefined) throw new Error('--' + key + ' needs a value');
    out[key] = value;
  }
  for (const k of required) {
    if (!out[k]) throw new Error('missing --' + k);
  }
  return out;
}

// Whatever hangs, the process ends after `ms` and says so.
export function hardStop(ms, finish) {
  const timer = setTimeout(() => {
    finish({ ok: false, error: 'gave up: the run took longer than ' + ms + ' ms' }, 1);
    process.exit(1);
  }, ms);
  timer.unref();
}

// playwright-core's chromium and Debian's browser (SECKILL_CHROMIUM overrides), or null once the
// failure is reported through `finish`.
export async function loadChromium(finish) {
  const executablePath = process.env.SECKILL_CHROMIUM || '/usr/bin/chromium';
  if (!existsSync(executablePath)) {
    finish({ ok: false, error: executablePath + ' is missing: run bash scripts/install-browser.sh' }, 1);
    return null;
  }
  try {
    const { chromium } = await import('playwright-core');
    return { chromium, executablePath };
  } catch (e) {
    finish({ ok: false, error: 'playwright-core cannot be loaded (' + e.message + '): run bash scripts/install-browser.sh' }, 1);
    return null;
  }
}

// Launches the browser and opens one page that records what went wrong on it in `seen`.
export async function openPage({ chromium, executablePath }, viewport, log) {
  const seen = { consoleErrors: [], pageErrors: [], cspViolations: [] };
  log('launching ' + executablePath);
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    timeout: 20000,
    // Root (CI) cannot use Chromium's sandbox; /dev/shm may be small in containers.
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--no-first-run', '--no-default-browser-check'],
  });
  const context = await browser.newContext({ viewport, locale: 'en-US' });
  context.setDefaultTimeout(10000);
  // Report CSP violations from inside the page too (the browser also logs them as console errors).
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error('CSP violation: ' + e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline code') +
        ' (' + (e.sourceFile || '') + ':' + (e.lineNumber || 0) + ')');
    });
  });
  const page = await context.newPage();
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const text = msg.text();
    seen.consoleErrors.push(text);
    log('console error: ' + text);
    if (/content security policy|CSP violation/i.test(text)) seen.cspViolations.push(text);
  });
  page.on('pageerror', (err) => {
    const text = String((err && err.stack) || err);
    seen.pageErrors.push(text);
    log('uncaught exception: ' + text);
  });
  return { browser, page, seen };
}

// Adds what the page saw to `result` and turns a success into a failure when the page had an
// uncaught exception or a CSP violation.
export function judgePage(result, seen) {
  if (seen.pageErrors.length) result.uncaught_exceptions = seen.pageErrors;
  if (seen.cspViolations.length) result.csp_violations = seen.cspViolations;
  if (result.ok && (seen.pageErrors.length || seen.cspViolations.length)) {
    result.ok = false;
    result.error = (seen.pageErrors.length ? seen.pageErrors.length + ' uncaught exception(s) ' : '') +
      (seen.cspViolations.length ? seen.cspViolations.length + ' CSP violation(s) ' : '') + 'on the page';
  }
}

// The full page as a PNG at `path`; a success whose screenshot fails becomes a failure.
export async function saveScreenshot(page, path, result, log) {
  try {
    mkdirSync(dirname(path), { recursive: true });
    await page.screenshot({ path, fullPage: true, timeout: 10000 });
    result.screenshot = path;
    log('screenshot: ' + path);
  } catch (e) {
    log('no screenshot: ' + e.message);
    if (result.ok) { result.ok = false; result.error = 'screenshot failed: ' + e.message; }
  }
}

// The flash sale, as a crowd does it: a ramping arrival rate of new buyers up to PEAK_RATE per
// second against one hot load-test campaign the script creates itself. Each arrival is one buyer:
// grab path, quiz (answered from the load-test export, after the server's minimum answer time),
// grab, order polling until confirmed, pay. Custom metrics count every outcome by code; thresholds
// fail the run on unexpected answers or slow grabs; at the end the sale's invariants are checked
// through the admin API (winners = stock, no buyer twice, every winner persisted and paid).
//
//   SECKILL_URL=http://127.0.0.1:8080 SECKILL_ADMIN_TOKEN=... k6 run bench/k6/flash-sale.js
//
// Knobs (env): STOCK (1000), PEAK_RATE (300 arrivals/s), RAMP_S (10), HOLD_S (20), QUIZ (true),
// HIDDEN_PATH (true), P99_MS (500), MAX_VUS (3000). Run the server with SECKILL_LIMITS=off when the
// load comes from one machine (see bench/k6/README.md).
import http from 'k6/http';
import { sleep } from 'k6';
import {
  BASE, setUpCampaign, nextBuyer, recordGrab, confirmAndPay, checkInvariants, untilStart, unexpected,
} from './lib.js';

const STOCK = Number(__ENV.STOCK || 1000);
const PEAK = Number(__ENV.PEAK_RATE || 300);
const RAMP_S = Number(__ENV.RAMP_S || 10);
const HOLD_S = Number(__ENV.HOLD_S || 20);
const QUIZ = (__ENV.QUIZ || 'true') === 'true';
const HIDDEN = (__ENV.HIDDEN_PATH || 'true') === 'true';
const P99_MS = Number(__ENV.P99_MS || 500);
const LEAD_MS = 5000;

export const options = {
  setupTimeout: '180s',
  teardownTimeout: '120s',
  scenarios: {
    crowd: {
      executor: 'ramping-arrival-rate',
      startRate: 1,
      timeUnit: '1s',
      preAllocatedVUs: Math.min(Number(__ENV.MAX_VUS || 3000), Math.ceil(PEAK * 2)),
      maxVUs: Number(__ENV.MAX_VUS || 3000),
      stages: [
        { target: PEAK, duration: RAMP_S + 's' },
        { target: PEAK, duration: HOLD_S + 's' },
      ],
    },
  },
  thresholds: {
    seckill_unexpected: ['count==0'],
    seckill_invariant_violations: ['count==0'],
    // Exactly the stock is acknowledged (202) when the crowd is larger than the stock; the other
    // codes are listed so the summary shows the count of each.
    'seckill_grab_outcomes{code:accepted}': ['count==' + STOCK],
    'seckill_grab_outcomes{code:sold_out}': ['count>=0'],
    'seckill_grab_outcomes{code:already_bought}': ['count>=0'],
    'seckill_grab_outcomes{code:not_started}': ['count>=0'],
    'seckill_grab_outcomes{code:quiz_failed}': ['count==0'],
    'seckill_grab_outcomes{code:rate_limited}': ['count>=0'],
    'seckill_grab_outcomes{code:overloaded}': ['count>=0'],
    'seckill_grab_outcomes{code:unavailable}': ['count>=0'],
    seckill_grab_ms: ['p(99)<' + P99_MS],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(99)', 'p(99.9)', 'max'],
};

export function setup() {
  return setUpCampaign({ stock: STOCK, quiz: QUIZ, hidden_path: HIDDEN, quiz_questions: QUIZ ? 1000 : undefined }, LEAD_MS);
}

export default function (data) {
  untilStart(data);
  const buyer = nextBuyer(data.run);
  const auth = { Authorization: 'Bearer ' + buyer.token };
  const gp = http.get(BASE + '/api/v1/campaigns/' + data.id + '/grab-path', { headers: auth, tags: { name: 'grab-path' } });
  if (gp.status !== 200) {
    // Sold out or ended already: the sale's answer for late arrivals.
    recordGrab(gp, null);
    return;
  }
  const path = gp.json().grab_path;
  let body = {};
  if (QUIZ) {
    const q = http.get(BASE + '/api/v1/campaigns/' + data.id + '/quiz', { headers: auth, tags: { name: 'quiz' } });
    if (q.status !== 200) { recordGrab(q, null); return; }
    const quiz = q.json();
    const answer = data.answers[quiz.image_url];
    if (answer === undefined) { unexpected.add(1, { status: 'quiz', code: 'image_not_in_export' }); return; }
    // A person needs a moment to read the image; the server refuses faster answers.
    sleep((quiz.min_answer_ms + 50) / 1000);
    body = { quiz_token: quiz.quiz_token, answer };
  }
  const started = Date.now();
  const r = http.post(BASE + path, JSON.stringify(body), {
    headers: Object.assign({ 'Content-Type': 'application/json' }, auth), tags: { name: 'grab' },
  });
  const code = recordGrab(r, started);
  if (r.status === 202 && code === '') confirmAndPay(r.json().order_id, buyer.token, true);
}

export function teardown(data) {
  checkInvariants(data, { soldOut: true, paidAll: true });
}

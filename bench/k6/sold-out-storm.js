// The sold-out storm: a campaign of STOCK units (10) without a quiz and a constant flood of grabs at
// RATE per second (2000) from ever new buyers, long after the stock is gone: the cheap rejection
// path under load. Thresholds: no unexpected answer, grab p99 under P99_MS (100); at the end the
// invariants (exactly STOCK winners, no buyer twice, every winner persisted).
//
//   SECKILL_URL=http://127.0.0.1:8080 SECKILL_ADMIN_TOKEN=... k6 run bench/k6/sold-out-storm.js
import http from 'k6/http';
import { BASE, setUpCampaign, nextBuyer, recordGrab, checkInvariants, untilStart } from './lib.js';

const STOCK = Number(__ENV.STOCK || 10);
const RATE = Number(__ENV.RATE || 2000);
const DURATION_S = Number(__ENV.DURATION_S || 20);
const P99_MS = Number(__ENV.P99_MS || 100);

export const options = {
  setupTimeout: '60s',
  teardownTimeout: '120s',
  scenarios: {
    storm: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION_S + 's',
      preAllocatedVUs: Math.ceil(RATE / 10),
      maxVUs: Number(__ENV.MAX_VUS || 2000),
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
  return setUpCampaign({ stock: STOCK }, 2000);
}

export default function (data) {
  untilStart(data);
  const buyer = nextBuyer(data.run);
  const started = Date.now();
  const r = http.post(BASE + '/api/v1/campaigns/' + data.id + '/grab', '{}', {
    headers: { Authorization: 'Bearer ' + buyer.token, 'Content-Type': 'application/json' }, tags: { name: 'grab' },
  });
  recordGrab(r, started);
}

export function teardown(data) {
  checkInvariants(data, { soldOut: true, paidAll: false });
}

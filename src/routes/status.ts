import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifySchema } from 'fastify';
import { tokenMatcher } from '../auth/bearer.js';
import { authorizationOf } from '../auth/header.js';
import { errorBody, unauthorized } from '../http/errors.js';
import type { Services } from '../services.js';
import { eventFrame, HEARTBEAT_MS, writeEventStreamHead } from './stream.js';

/** `clock` times the heartbeat (tests move a manual clock); figures are sampled each second of real time. */
export interface StatusRouteOptions
  extends Pick<Services, 'store' | 'storeMaxBytes' | 'budget' | 'metrics' | 'clock'> {
  /** The token /metrics requires, if any: the status page requires it too. */
  readonly metricsToken: string | undefined;
}

/** How often an open status page is sent the figures, when they have changed. */
export const STATUS_INTERVAL_MS = 1_000;
/** Status pages open at once: each costs a connection and a snapshot a second; more get a 503. */
const MAX_STATUS_STREAMS = 20;
/** A status page whose unsent bytes pass this is not reading: it is dropped (it reconnects when it can). */
const MAX_UNSENT_BYTES = 64 * 1024;

/** What the status page shows: the figures /metrics and /readyz give, in one small JSON event. */
export async function statusSnapshot({ store, storeMaxBytes, budget, metrics }: StatusRouteOptions) {
  const totals = await metrics.totals();
  const { limitPerMinute, callsLeftThisMinute, state, inFlight, queued } = budget.snapshot();
  return {
    requests: totals.requests,
    saved: totals.saved,
    stale: totals.stale,
    hitRatio: totals.requests === 0 ? null : totals.saved / totals.requests,
    upstreamCalls: totals.upstreamCalls,
    budget: { limitPerMinute, callsLeftThisMinute, state, inFlight, queued },
    store: { entries: store.entries, bytes: store.bytes, maxBytes: storeMaxBytes },
    streamsOpen: totals.streamsOpen,
  };
}

const STYLE = `body{font:15px/1.4 system-ui,sans-serif;margin:2rem;color:#222}
h1{font-size:1.3rem}table{border-collapse:collapse}th{text-align:left;font-weight:normal;color:#555;padding:.25rem 1.5rem .25rem 0}
td{font-variant-numeric:tabular-nums;text-align:right;padding:.25rem 0}#live{color:#555}#live.down{color:#b00}`;

// Figures arrive as server-sent events (EventSource reconnects by itself); each element whose id names a figure shows it.
const SCRIPT = `const live = document.getElementById('live');
const number = (n) => n.toLocaleString('en');
const mib = (b) => (b / 1048576).toFixed(1) + ' MiB';
const show = (s) => ({
  hitRatio: s.hitRatio === null ? '-' : (100 * s.hitRatio).toFixed(1) + ' %',
  requests: number(s.requests), saved: number(s.saved), stale: number(s.stale), upstreamCalls: number(s.upstreamCalls),
  budget: number(s.budget.callsLeftThisMinute) + ' of ' + number(s.budget.limitPerMinute) + ' left this minute',
  state: s.budget.state, inFlight: number(s.budget.inFlight), queued: number(s.budget.queued),
  entries: number(s.store.entries), bytes: mib(s.store.bytes) + ' of ' + mib(s.store.maxBytes), streamsOpen: number(s.streamsOpen),
});
const events = new EventSource('status/events');
events.onmessage = (event) => {
  for (const [id, text] of Object.entries(show(JSON.parse(event.data)))) document.getElementById(id).textContent = text;
  live.textContent = 'live, updated ' + new Date().toLocaleTimeString('en-GB');
  live.className = '';
};
events.onerror = () => { live.textContent = 'reconnecting…'; live.className = 'down'; };`;

const ROWS: ReadonlyArray<readonly [string, string]> = [
  ['hitRatio', 'Answered without a call of their own'],
  ['requests', 'Requests'],
  ['saved', 'Calls saved'],
  ['stale', 'Stale answers'],
  ['upstreamCalls', 'Calls to Deskie'],
  ['budget', 'Upstream budget'],
  ['state', 'Budget state (circuit-open after a 429)'],
  ['inFlight', 'Calls in flight'],
  ['queued', 'Calls waiting'],
  ['entries', 'Cached answers'],
  ['bytes', 'Cache size'],
  ['streamsOpen', 'Event streams open'],
];

const PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>deskie-stats-proxy status</title><style>${STYLE}</style></head>
<body><h1>deskie-stats-proxy</h1><p id="live">connecting…</p>
<table>${ROWS.map(([id, label]) => `<tr><th>${label}</th><td id="${id}">-</td></tr>`).join('')}</table>
<p>Counts since this process started. <a href="metrics">Prometheus metrics</a></p>
<script>${SCRIPT}</script></body></html>
`;

const sha256 = (text: string): string => `'sha256-${createHash('sha256').update(text).digest('base64')}'`;
/** Only this page's own script and style run, and it connects only to this server. */
const CONTENT_SECURITY_POLICY = `default-src 'none'; script-src ${sha256(SCRIPT)}; style-src ${sha256(STYLE)}; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`;

/** A page (no build step) fed by /status/events, an SSE of statusSnapshot(); behind METRICS_TOKEN like /metrics. */
export async function statusRoutes(app: FastifyInstance, options: StatusRouteOptions): Promise<void> {
  const allowed = options.metricsToken === undefined ? undefined : tokenMatcher(options.metricsToken);
  app.addHook('onRequest', async (request) => {
    if (allowed !== undefined && !allowed(authorizationOf(request.raw))) {
      throw unauthorized('METRICS_TOKEN is required: as a bearer token, or as the password of any user name', 'Basic realm="deskie-stats-proxy status", charset="UTF-8"');
    }
  });
  const schema = (summary: string): FastifySchema => ({ summary, tags: ['operations'], security: [{}, { metricsToken: [] as string[] }] });

  app.get('/status', { schema: schema('A live status page for a browser') }, async (_request, reply) =>
    reply.type('text/html; charset=utf-8').header('cache-control', 'no-store').header('content-security-policy', CONTENT_SECURITY_POLICY).send(PAGE),
  );

  /** The open pages, each with what it was last sent and when. */
  const open = new Map<FastifyReply, { json: string; atMs: number } | undefined>();
  let timer: NodeJS.Timeout | undefined;
  const send = (reply: FastifyReply, json: string): void => {
    const { raw } = reply;
    if (raw.writableLength > MAX_UNSENT_BYTES) {
      reply.log.warn({ unsentBytes: raw.writableLength }, 'a status page was dropped: it does not read what it is sent');
      raw.destroy();
      return;
    }
    const previous = open.get(reply);
    const now = options.clock();
    if (previous?.json !== json) raw.write(eventFrame(json));
    else if (now - previous.atMs >= HEARTBEAT_MS) raw.write(': heartbeat\n\n');
    else return;
    open.set(reply, { json, atMs: now });
  };
  // One timer for every open page, running only while one is open; the UI's pace, not a freshness deadline, so real time.
  const tick = async (): Promise<void> => {
    const json = JSON.stringify(await statusSnapshot(options));
    for (const reply of open.keys()) send(reply, json);
  };

  app.get('/status/events', { schema: schema('The status page’s figures as server-sent events') }, async (_request, reply) => {
    if (open.size >= MAX_STATUS_STREAMS) {
      return reply.code(503).header('retry-after', '10').type('application/json').send(errorBody(`too many status pages are open (${MAX_STATUS_STREAMS}); retry in 10 s`));
    }
    const first = JSON.stringify(await statusSnapshot(options));
    reply.hijack();
    writeEventStreamHead(reply);
    open.set(reply, undefined);
    reply.raw.on('close', () => {
      open.delete(reply);
      if (open.size === 0) timer = (clearInterval(timer), undefined);
    });
    timer ??= setInterval(() => void tick(), STATUS_INTERVAL_MS).unref();
    send(reply, first);
    return undefined;
  });

  // Open pages would hold the server's close: each is ended, and its EventSource retries elsewhere.
  app.addHook('preClose', (done) => {
    for (const reply of open.keys()) reply.raw.end();
    done();
  });
}

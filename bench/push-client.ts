/**
 * The push scenario's screens, run as their own process on the load's core:
 * `node --import tsx bench/push-client.ts <url> <path> <authorization>`.
 * Commands come one a line on stdin, answers as one JSON line each on stdout:
 *
 *   open <count> <clockMs>  opens that many more event streams on <path>, each
 *                           carrying the clock in X-Bench-Now; answers once
 *                           each has its first event or failed
 *   go <clockMs>            sends one GET /healthz with the clock, which makes
 *                           the refresh due, and answers once every open stream
 *                           has its next event (or after TIMEOUT_MS)
 *
 * Times are this process's monotonic clock, from the moment the go request is
 * written. Plain sockets and a count of the `id:` lines keep the work per
 * event small: every event the proxy sends has an id, a heartbeat has none.
 */
import { connect, type Socket } from 'node:net';
import { createInterface } from 'node:readline';

/** Streams being opened at once. */
const OPENING_AT_ONCE = 100;
/** How long a stream may wait for its first event, and the streams for the change. */
const TIMEOUT_MS = 30_000;
const EVENT_MARK = Buffer.from('\nid: ');

const [target = '', path = '', authorization = ''] = process.argv.slice(2);
if (!target || !path || !authorization) throw new Error('usage: push-client.ts <url> <path> <authorization>');
const url = new URL(target);

interface Stream {
  readonly socket: Socket;
  events: number;
  /** Events before the go request, and when the next one came (ms after it). */
  eventsAtGo: number;
  deliveredMs: number | undefined;
}

const streams: Stream[] = [];
let failed = 0;
let goAt = 0;
/** Streams still to get their event after the go, and what to call when none is left. */
let undelivered = 0;
let allDelivered: (() => void) | undefined;

const requestFor = (requestPath: string, clockMs: string, accept = '') =>
  `GET ${requestPath} HTTP/1.1\r\nhost: ${url.host}\r\nauthorization: ${authorization}\r\n${accept}x-bench-now: ${clockMs}\r\n\r\n`;

/** Opens one stream; resolves true once its first event is in, false if it was refused or closed first. */
function open(clockMs: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(Number(url.port), url.hostname).setNoDelay(true);
    const stream: Stream = { socket, events: 0, eventsAtGo: 0, deliveredMs: undefined };
    let tail = Buffer.alloc(0);
    let head = true;
    let opened = false;
    socket.on('data', (chunk: Buffer) => {
      if (head && !chunk.subarray(0, 12).toString('latin1').startsWith('HTTP/1.1 200')) return socket.destroy();
      head = false;
      // The last bytes of the chunk before: a mark may straddle two.
      const seen = Buffer.concat([tail, chunk]);
      for (let at = seen.indexOf(EVENT_MARK); at !== -1; at = seen.indexOf(EVENT_MARK, at + 1)) stream.events += 1;
      tail = Buffer.from(seen.subarray(-(EVENT_MARK.length - 1)));
      if (!opened && stream.events > 0) {
        opened = true;
        socket.setTimeout(0);
        streams.push(stream);
        resolve(true);
      }
      if (goAt > 0 && stream.deliveredMs === undefined && stream.events > stream.eventsAtGo) {
        stream.deliveredMs = performance.now() - goAt;
        if (--undelivered === 0) allDelivered?.();
      }
    });
    socket.on('error', () => socket.destroy());
    socket.setTimeout(TIMEOUT_MS, () => socket.destroy());
    socket.on('close', () => resolve(false));
    socket.write(requestFor(path, clockMs, 'accept: text/event-stream\r\n'));
  });
}

async function openMany(count: number, clockMs: string): Promise<void> {
  let left = count;
  const opener = async (): Promise<void> => {
    while (left > 0) {
      left -= 1;
      if (!(await open(clockMs))) failed += 1;
    }
  };
  await Promise.all(Array.from({ length: Math.min(OPENING_AT_ONCE, count) }, opener));
  reply({ open: streams.length, failed });
}

async function go(clockMs: string): Promise<void> {
  for (const stream of streams) stream.eventsAtGo = stream.events;
  undelivered = streams.length;
  const trigger = connect(Number(url.port), url.hostname).setNoDelay(true);
  await new Promise((resolve) => trigger.once('connect', resolve));
  trigger.resume();
  const delivered = new Promise<void>((resolve) => {
    allDelivered = resolve;
    setTimeout(resolve, TIMEOUT_MS).unref();
  });
  goAt = performance.now();
  trigger.write(requestFor('/healthz', clockMs));
  await delivered;
  trigger.destroy();
  const latencies = streams.flatMap((stream) => (stream.deliveredMs === undefined ? [] : [stream.deliveredMs])).sort((a, b) => a - b);
  const percentile = (p: number): number => latencies[Math.min(latencies.length - 1, Math.ceil((p / 100) * latencies.length) - 1)] ?? Number.NaN;
  // A stream that had more than its first event before the go was sent something it should not have been.
  const early = streams.filter((stream) => stream.eventsAtGo !== 1).length;
  reply({ delivered: latencies.length, early, p50: percentile(50), p99: percentile(99), max: latencies.at(-1) ?? Number.NaN });
}

const reply = (message: object): void => void process.stdout.write(`${JSON.stringify(message)}\n`);

for await (const line of createInterface({ input: process.stdin })) {
  const [command, ...words] = line.split(' ');
  if (command === 'open') await openMany(Number(words[0]), words[1] ?? '');
  else if (command === 'go') await go(words[0] ?? '');
}
for (const stream of streams) stream.socket.destroy();

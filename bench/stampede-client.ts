/**
 * The stampede's load generator, run as its own process:
 * `node --import tsx bench/stampede-client.ts <url> <connections> <authorization>`.
 * It opens every connection first (each asks /healthz, so the server has
 * accepted it), then writes one request for `url` on each at once, so the
 * latencies it reports (JSON on stdout, in ms) are the requests' own, not a
 * storm of connection set-ups. Plain sockets and a minimal response reader
 * keep its own work per response to a few microseconds.
 */
import { connect, type Socket } from 'node:net';

const [target, count, authorization] = process.argv.slice(2);
if (!target || !count || !authorization) throw new Error('usage: stampede-client.ts <url> <connections> <authorization>');
const url = new URL(target);
const requestFor = (path: string) => Buffer.from(`GET ${path} HTTP/1.1\r\nhost: ${url.host}\r\nauthorization: ${authorization}\r\n\r\n`);

/** Writes a request and resolves with the status once the whole response (its Content-Length) is in. */
function exchange(socket: Socket, request: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    let received = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      const headEnd = received.indexOf('\r\n\r\n');
      if (headEnd === -1) return;
      const head = received.subarray(0, headEnd).toString('latin1');
      const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
      if (!length) return done(new Error(`no content-length in ${head}`));
      if (received.length >= headEnd + 4 + Number(length[1])) done(null, Number(head.slice(9, 12)));
    };
    const done = (error: Error | null, status = 0) => {
      socket.off('data', onData).off('error', done);
      if (error) reject(error);
      else resolve(status);
    };
    socket.on('data', onData).once('error', done);
    socket.write(request);
  });
}

const sockets = await Promise.all(
  Array.from({ length: Number(count) }, async () => {
    const socket = connect(Number(url.port), url.hostname).setNoDelay(true);
    await exchange(socket, requestFor('/healthz'));
    return socket;
  }),
);

const request = requestFor(`${url.pathname}${url.search}`);
let errors = 0;
let non2xx = 0;
const latencies = await Promise.all(
  sockets.map(async (socket) => {
    const sent = performance.now();
    try {
      const status = await exchange(socket, request);
      if (status < 200 || status > 299) non2xx++;
    } catch {
      errors++;
    }
    return performance.now() - sent;
  }),
);
for (const socket of sockets) socket.destroy();

latencies.sort((a, b) => a - b);
const percentile = (p: number): number => latencies[Math.min(latencies.length - 1, Math.ceil((p / 100) * latencies.length) - 1)] ?? Number.NaN;
const seconds = (latencies.at(-1) ?? 0) / 1000 || 1;
process.stdout.write(JSON.stringify({ requests: latencies.length, rps: latencies.length / seconds, p50: percentile(50), p99: percentile(99), errors, non2xx }));

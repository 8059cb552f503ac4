import { createHash } from 'node:crypto';
import type { FastifyBaseLogger, FastifyReply, FastifyRequest } from 'fastify';
import type { CachedStats, StatsAnswer } from '../cache/cached-stats.js';
import type { CancelTask, Scheduler } from '../cache/scheduler.js';
import { renderedVariant } from '../cache/store.js';
import type { StatsQuery } from '../deskie/query.js';
import { chooseFormat, FORMAT_PARAMETER, type Variant, variantOf } from '../formats/representations.js';
import { errorBody, ProxyError, UpstreamAnswer } from '../http/errors.js';
import type { ProxyMetrics } from '../observability/metrics.js';

/** A comment line this often keeps proxies and load balancers from closing an idle stream. */
export const HEARTBEAT_MS = 15_000;
/** What a client refused for the stream limit is told to wait before it tries again. */
const FULL_RETRY_AFTER_SECONDS = 10;
/** An ETag of ours is a quoted hash: a longer Last-Event-ID is not one, and is ignored. */
const MAX_LAST_EVENT_ID_LENGTH = 128;

export interface EventStreamLimits {
  /** Streams open at once on this process (SSE_MAX_STREAMS). */
  readonly maxStreams: number;
  /** Streams open at once per credential, or per client token in service mode (SSE_MAX_STREAMS_PER_CLIENT). */
  readonly maxStreamsPerClient: number;
  /** Bytes a stream may have written and not yet sent before its consumer is dropped (SSE_MAX_BUFFER_BYTES). */
  readonly maxBufferBytes: number;
}

export interface EventStreamsOptions extends EventStreamLimits {
  readonly stats: CachedStats;
  readonly clock: () => number;
  /** Runs heartbeats on `clock` (tests move a manual clock instead of waiting). */
  readonly scheduler: Scheduler;
  readonly metrics: ProxyMetrics;
  readonly log: FastifyBaseLogger;
}

/** One stream's question: the query checked now, and how to check it again once its window has rolled. */
export interface StreamRequest {
  readonly query: StatsQuery;
  readonly recheck: (nowMs: number) => StatsQuery;
  readonly authorization: string;
  /** The client token's name in service mode; else the credential stands for the client. */
  readonly client: string | undefined;
  readonly variant: Variant;
}

export function acceptsEventStream(accept: string | undefined): boolean {
  return accept !== undefined && accept.includes('text/event-stream');
}

/** A stream's variant: the format asked for by `format=` (never by Accept, which names the stream), uncompressed. */
export function streamVariant(query: StatsQuery): Variant {
  return variantOf(chooseFormat(query.proxy[FORMAT_PARAMETER], undefined), false, 'identity');
}

/** Each sends its answer, then new bytes; watched keys refresh in phase with Deskie: one call a lifetime for all. */
export class EventStreams {
  readonly #options: EventStreamsOptions;
  readonly #open = new Set<LiveAnswer>();
  /** Streams open per client (token name, or a hash of the credential). */
  readonly #perClient = new Map<string, number>();
  /** Streams admitted whose first answer is still awaited: counted against the limit with the open ones. */
  #starting = 0;

  constructor(options: EventStreamsOptions) {
    this.#options = options;
  }

  /** Answers `request` with a stream, or a 503 when a limit is reached; the first answer's errors are thrown before any stream starts. */
  async serve(request: FastifyRequest, reply: FastifyReply, asked: StreamRequest): Promise<FastifyReply | undefined> {
    const { stats, clock, maxStreams, maxStreamsPerClient } = this.#options;
    const client = asked.client ?? createHash('sha256').update(asked.authorization).digest('base64url').slice(0, 22);
    const ofClient = this.#perClient.get(client) ?? 0;
    const full = this.#open.size + this.#starting >= maxStreams;
    if (full || ofClient >= maxStreamsPerClient) {
      const which = full ? `this server's ${maxStreams}` : `the ${maxStreamsPerClient} per client`;
      reply.code(503).header('retry-after', String(FULL_RETRY_AFTER_SECONDS)).type('application/json');
      return reply.send(errorBody(`too many event streams are open (${which}); retry in ${FULL_RETRY_AFTER_SECONDS} s, or poll`));
    }
    // Counted before the first answer is awaited, so a burst cannot pass the limits.
    this.#perClient.set(client, ofClient + 1);
    const release = (): void => {
      const left = (this.#perClient.get(client) ?? 1) - 1;
      if (left > 0) this.#perClient.set(client, left);
      else this.#perClient.delete(client);
    };
    let first: StatsAnswer;
    this.#starting += 1;
    try {
      first = await stats.answer(asked.query, asked.authorization, clock(), asked.variant);
    } catch (error) {
      release();
      throw error;
    } finally {
      this.#starting -= 1;
    }
    reply.hijack();
    const live = new LiveAnswer({ ...this.#options, log: request.log }, asked, reply, () => {
      this.#open.delete(live);
      release();
      this.#options.metrics.streamClosed();
    });
    this.#open.add(live);
    this.#options.metrics.streamOpened();
    live.start(first, lastEventIdOf(request));
    return undefined;
  }

  /** Ends every stream (the server is closing): each client sees its response end and may reconnect elsewhere. */
  closeAll(): void {
    for (const live of [...this.#open]) live.end();
  }
}

/** Sends a hijacked reply's event-stream head now: a stream may have nothing to send for a while, and its client waits for the headers. */
export function writeEventStreamHead(reply: FastifyReply): void {
  reply.raw.writeHead(200, {
    ...(reply.getHeaders() as Record<string, string>),
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-store',
    // A buffering reverse proxy in front (nginx) would hold the events back.
    'x-accel-buffering': 'no',
  });
  reply.raw.flushHeaders();
}

export function eventFrame(data: string, id?: string): string {
  const lines = data.split(/\r\n|\r|\n/).map((line) => `data: ${line}\n`).join('');
  return `${id === undefined ? '' : `id: ${id}\n`}${lines}\n`;
}

/** Frames by the answer body they carry: a refresh fanned out to 10,000 streams builds its frame once, not 10,000 times. */
const framesByBody = new WeakMap<Buffer, Buffer>();

function sharedFrame(body: Buffer, etag: string): Buffer {
  let frame = framesByBody.get(body);
  if (frame === undefined) framesByBody.set(body, (frame = Buffer.from(eventFrame(body.toString('utf8'), etag))));
  return frame;
}

function lastEventIdOf(request: FastifyRequest): string | undefined {
  const value = request.headers['last-event-id'];
  return typeof value === 'string' && value.length <= MAX_LAST_EVENT_ID_LENGTH ? value : undefined;
}

/** A refusal of the credential: its streams end, as its polls would get the 401 or 403. */
function refusesCredential(error: unknown): boolean {
  if (error instanceof UpstreamAnswer) return error.refusesCredential;
  return error instanceof ProxyError && (error.statusCode === 401 || error.statusCode === 403);
}

/** One open stream: its query (moved to the next window when its window rolls), the last answer sent, its heartbeat. */
class LiveAnswer {
  readonly #options: EventStreamsOptions;
  readonly #asked: StreamRequest;
  readonly #reply: FastifyReply;
  readonly #onEnd: () => void;
  #query: StatsQuery;
  #lastEtag: string | undefined;
  /** When the last answer sent stops being fresh: past it, a heartbeat asks again (a refresh that failed, a missed roll). */
  #expiresAtMs = Number.POSITIVE_INFINITY;
  #unwatch: () => void = () => {};
  #cancelBeat: CancelTask = () => {};
  #asking = false;
  #askAgain = false;
  #ended = false;
  #eventsSent = 0;
  readonly #openedAtMs = performance.now();

  constructor(options: EventStreamsOptions, asked: StreamRequest, reply: FastifyReply, onEnd: () => void) {
    this.#options = options;
    this.#asked = asked;
    this.#reply = reply;
    this.#onEnd = onEnd;
    this.#query = asked.query;
  }

  start(first: StatsAnswer, lastEventId: string | undefined): void {
    const { raw } = this.#reply;
    raw.on('close', () => this.end());
    // A write after the client went is refused: the close above ends the stream.
    raw.on('error', () => this.end(true));
    // The client went while its first answer was awaited: nothing to stream to.
    if (raw.socket === null || raw.socket.destroyed) {
      this.end(true);
      return;
    }
    writeEventStreamHead(this.#reply);
    this.#lastEtag = lastEventId;
    this.#send(first);
    if (this.#ended) return;
    this.#unwatch = this.#options.stats.watch(this.#query, this.#asked.authorization, () => void this.#ask());
    this.#armBeat();
  }

  /** Ends the stream; `drop`: at once, without waiting for what its client has not taken. */
  end(drop = false): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#unwatch();
    this.#cancelBeat();
    if (drop) this.#reply.raw.destroy();
    else this.#reply.raw.end();
    // A stream has no access line (its reply is not Fastify's to send): this is its line.
    const { route, period, format } = this.#reply.request.access?.query ?? {};
    this.#options.log.info({ route, period, format, events: this.#eventsSent, openMs: Math.round(performance.now() - this.#openedAtMs) }, 'event stream ended');
    this.#onEnd();
  }

  /** Sends `answer` as an event unless the client has its bytes already (its ETag is the last event id). */
  #send(result: StatsAnswer, force = false): void {
    const { answer } = result;
    this.#expiresAtMs = answer.expiresAtMs;
    const representation = renderedVariant(answer, this.#asked.variant) ?? this.#options.stats.representation(answer, this.#asked.variant);
    if (!force && representation.etag === this.#lastEtag) return;
    this.#lastEtag = representation.etag;
    this.#write(sharedFrame(representation.body, representation.etag));
    if (this.#ended) return;
    this.#eventsSent += 1;
    this.#options.metrics.streamEventSent();
  }

  // Bound checked before the write: an answer larger than the bound still reaches a client that reads.
  #write(frame: string | Buffer): void {
    const { raw } = this.#reply;
    const { maxBufferBytes, log, metrics } = this.#options;
    if (raw.writableLength > maxBufferBytes) {
      log.warn({ unsentBytes: raw.writableLength, maxBufferBytes }, 'an event stream was dropped: its client does not read what it is sent (SSE_MAX_BUFFER_BYTES)');
      metrics.streamDropped('slow-consumer');
      this.end(true);
      return;
    }
    raw.write(frame);
  }

  #armBeat(): void {
    const { scheduler, clock } = this.#options;
    this.#cancelBeat = scheduler.at(clock() + HEARTBEAT_MS, () => {
      if (this.#ended) return;
      this.#write(': heartbeat\n\n');
      if (this.#ended) return;
      const nowMs = clock();
      const changesAtMs = this.#query.window.changesAt?.toMillis() ?? Number.POSITIVE_INFINITY;
      if (nowMs >= this.#expiresAtMs || nowMs >= changesAtMs) void this.#ask();
      this.#armBeat();
    });
  }

  /** Asks for the query's answer as a poll would (once at a time), moving to the next window when it has rolled. */
  async #ask(): Promise<void> {
    if (this.#asking) {
      this.#askAgain = true;
      return;
    }
    this.#asking = true;
    try {
      do {
        this.#askAgain = false;
        await this.#askOnce();
      } while (this.#askAgain && !this.#ended);
    } finally {
      this.#asking = false;
    }
  }

  async #askOnce(): Promise<void> {
    const { stats, clock, log } = this.#options;
    if (this.#ended) return;
    const nowMs = clock();
    const changesAtMs = this.#query.window.changesAt?.toMillis() ?? Number.POSITIVE_INFINITY;
    const rolled = nowMs >= changesAtMs;
    const query = rolled ? this.#asked.recheck(nowMs) : this.#query;
    let result: StatsAnswer;
    try {
      result = await stats.answer(query, this.#asked.authorization, nowMs, this.#asked.variant);
    } catch (error) {
      if (refusesCredential(error)) {
        log.info({ status: (error as { statusCode: number }).statusCode }, 'an event stream ended: Deskie refuses its credential');
        this.#options.metrics.streamDropped('credential-refused');
        this.end();
      } else {
        // As a poll would: the next refresh, or the next heartbeat past expiry, asks again.
        log.debug({ err: error }, 'an event stream could not be answered now; it keeps its last answer');
      }
      return;
    }
    if (this.#ended) return;
    if (rolled) {
      this.#unwatch();
      this.#query = query;
      this.#unwatch = stats.watch(query, this.#asked.authorization, () => void this.#ask());
    }
    // The new window's answer is an event even with the same bytes: it says the window moved.
    this.#send(result, rolled);
  }
}

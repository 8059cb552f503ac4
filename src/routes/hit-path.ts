import { createServer, type IncomingMessage, type Server, type ServerOptions, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyBaseLogger } from 'fastify';
import { requestIds } from '../http/request-id.js';

/**
 * Answers a GET for `path?queryString` when it is a cache hit, writing the
 * whole answer, and says so; returns false, having written nothing, for
 * anything else.
 */
export type HitAnswerer = (request: IncomingMessage, response: ServerResponse, queryString: string) => boolean;

const QUESTION_MARK = 0x3f;

/** The Fastify options the server needs (Fastify passes all of them to a server factory). */
interface ServerSettings {
  readonly http?: ServerOptions;
  readonly keepAliveTimeout: number;
  readonly requestTimeout: number;
  readonly connectionTimeout: number;
  readonly maxRequestsPerSocket?: number;
}

/**
 * The hit path: a GET for one of the statistics routes that the cache can
 * answer is answered before Fastify routes it; every other request, and any
 * GET that is not a hit, goes to Fastify as it came.
 *
 * A hit costs little more than writing it, and Fastify's routing, request
 * and reply objects and send() were most of what it cost beyond that:
 * measured side by side (servers on one core, wrk on the other), a bare
 * Fastify route spent 21.3 µs a request and a Node handler writing the same
 * bytes 16.6. Answered here, a hit without its access line costs about what
 * that bare route does (21.9 against 21.35 µs in one run; BENCHMARKS.md).
 *
 * What Fastify would have done for such a request is done here or is not
 * needed: the routes' own checks (credential, query) and answer
 * (routes/stats.ts, the same functions for both), the request id (one
 * generator, `requestId`, is also Fastify's genReqId), the access line and
 * the metrics. Only the statistics routes are answered here, and they have
 * no hooks; a hook added for them would be skipped by hits, so add it here
 * too. Once Fastify starts closing, every request is answered 503 by
 * `whileClosing` (the app's error shape and access line).
 *
 * Its own server, Fastify's serverFactory, is the documented way to see a
 * request first; it sets the timeouts Fastify sets on the server it makes,
 * the connection timeout where a connection can idle (see serverFactory).
 */
export class HitPath {
  readonly #routes: Array<{ readonly path: string; readonly answerer: HitAnswerer }> = [];
  readonly #log: FastifyBaseLogger;
  #open = true;
  #whileClosing: ((request: IncomingMessage, response: ServerResponse) => void) | undefined;

  /** The request id of every request (Fastify's genReqId): see request-id.ts. */
  readonly requestId = requestIds();

  constructor(log: FastifyBaseLogger) {
    this.#log = log;
  }

  /** Hits for `path` (the exact path, as a client sends it) are answered by `answerer`. */
  add(path: string, answerer: HitAnswerer): void {
    this.#routes.push({ path, answerer });
  }

  /** From now on no request is a hit: each goes to `whileClosing`, or without one to Fastify (it is closing). */
  close(): void {
    this.#open = false;
  }

  /**
   * What answers every request once closing: Fastify's own answer then (a
   * 503) has a body of another shape and, with no logger given to Fastify,
   * no access line.
   */
  whileClosing(answer: (request: IncomingMessage, response: ServerResponse) => void): void {
    this.#whileClosing = answer;
  }

  /** Fastify's serverFactory: an HTTP server that offers each request to the hit path first. */
  readonly serverFactory = (fastify: (request: IncomingMessage, response: ServerResponse) => void, options: Record<string, unknown>): Server => {
    const settings = options as unknown as ServerSettings;
    const idleMs = settings.connectionTimeout;
    const server = createServer(settings.http ?? {}, (request, response) => {
      if (!this.#open && this.#whileClosing !== undefined) {
        this.#whileClosing(request, response);
      } else if (!this.#answered(request, response)) {
        if (idleMs > 0) request.socket.setTimeout(idleMs);
        fastify(request, response);
      } else if (idleMs > 0 && response.writableLength > 0) {
        // Not all written at once: a client that does not read holds it, as long as it sends nothing either.
        request.socket.setTimeout(idleMs);
      }
    });
    // What Fastify sets on the server it makes itself (fastify/lib/server.js),
    // but for its connection timeout: as the server's timeout, Node re-arms it
    // as each request starts (a timer made, the keep-alive one cleared), which
    // cost a hit about 1 µs side by side (BENCHMARKS.md). A hit is written at
    // once and its connection goes straight back to the keep-alive timeout,
    // so the bound is set where a connection can idle: when it opens (until
    // its first request), on each request Fastify answers, and on a hit whose
    // answer the client has not taken yet. Node closes a connection that
    // reaches it, as it would with the server's timeout.
    server.keepAliveTimeout = settings.keepAliveTimeout;
    server.requestTimeout = settings.requestTimeout;
    if (idleMs > 0) server.on('connection', (socket: Socket) => socket.setTimeout(idleMs));
    if (settings.maxRequestsPerSocket !== undefined && settings.maxRequestsPerSocket > 0) server.maxRequestsPerSocket = settings.maxRequestsPerSocket;
    return server;
  };

  #answered(request: IncomingMessage, response: ServerResponse): boolean {
    if (!this.#open || request.method !== 'GET') return false;
    const url = request.url as string;
    // Only a path exactly as a route is written, then nothing or a query:
    // Fastify routes the rest (percent-encoded letters, a fragment, an
    // absolute URL) or refuses it. Compared in place: three routes.
    let answerer: HitAnswerer | undefined;
    let queryAt = 0;
    for (const route of this.#routes) {
      const { length } = route.path;
      if (url.startsWith(route.path) && (url.length === length || url.charCodeAt(length) === QUESTION_MARK)) {
        answerer = route.answerer;
        queryAt = length + 1;
        break;
      }
    }
    if (answerer === undefined) return false;
    try {
      return answerer(request, response, queryAt < url.length ? url.slice(queryAt) : '');
    } catch (error) {
      // Nothing written yet: the route answers, and its error handler reports what went wrong.
      if (!response.headersSent) return false;
      this.#log.error({ err: error }, 'a hit failed while it was written');
      response.destroy();
      return true;
    }
  }
}

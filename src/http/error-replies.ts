import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyBaseLogger, FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { errorCacheStatus } from '../cache/cache-status.js';
import { ENDPOINTS } from '../deskie/endpoints.js';
import { JSON_TYPE } from '../formats/representations.js';
import type { ProxyMetrics } from '../observability/metrics.js';
import { errorBody, notFound, ProxyError, shuttingDown, UpstreamAnswer } from './errors.js';

/** Every answer's headers; a statistics answer replaces no-store (a 404 is cacheable by default, RFC 9110 §15.5.5). */
function ownAnswerHeaders(request: FastifyRequest, reply: FastifyReply): void {
  reply.headers({ 'x-request-id': request.id, 'x-content-type-options': 'nosniff', 'cache-control': 'no-store' });
}

const ROUTE_LIST = Object.values(ENDPOINTS)
  .map((endpoint) => endpoint.path)
  .join(', ');

/** {"status":"error",...} for ours, Fastify's, 404s, closing; Deskie's pass as sent; parser's: answerClientError. */
export function registerErrorReplies(app: FastifyInstance, { log, metrics, isClosing }: { log: FastifyBaseLogger; metrics: ProxyMetrics; isClosing: () => boolean }): void {
  // First of all hooks: the request id and nosniff for every answer, and no new work once closing.
  app.addHook('onRequest', (request, reply, done) => {
    ownAnswerHeaders(request, reply);
    if (!isClosing()) return done();
    reply.header('connection', 'close');
    done(shuttingDown());
  });

  app.setNotFoundHandler((request) => {
    throw notFound(`no route ${request.method} ${request.url.split('?')[0]}; this server answers GET and HEAD on ${ROUTE_LIST}`);
  });

  app.setErrorHandler((error: FastifyError | ProxyError | UpstreamAnswer, request, reply) => {
    const endpoint = request.routeOptions.config.endpoint;
    if (endpoint !== undefined) {
      if (request.access === undefined) request.access = { query: undefined, outcome: 'error' };
      else request.access.outcome = 'error';
      if ((error as ProxyError).remembered) metrics.countRemembered(endpoint);
    }
    sendError(error, request, reply, log);
    if (endpoint !== undefined) metrics.count(endpoint, request.access?.periodClass, 'error', reply.statusCode);
    return reply;
  });
}

/** Sends the JSON error for `error`: Deskie's own answer as it came, ours in our shape. */
function sendError(error: FastifyError | ProxyError | UpstreamAnswer, request: FastifyRequest, reply: FastifyReply, log: FastifyBaseLogger): FastifyReply {
  if (error instanceof UpstreamAnswer || error instanceof ProxyError) {
    const cacheStatus = errorCacheStatus(error);
    if (cacheStatus !== undefined) reply.header('cache-status', cacheStatus);
  }
  if (error instanceof UpstreamAnswer) {
    if (error.retryAfterSeconds !== undefined) reply.header('retry-after', String(error.retryAfterSeconds));
    return reply.code(error.statusCode).type(error.contentType ?? JSON_TYPE).send(error.body);
  }
  if (error instanceof ProxyError) {
    // The budget logs its own changes of state; its refusals would be a line per request.
    const quiet = error.remembered || error.code === 'UPSTREAM_BUSY' || error.code === 'SHUTTING_DOWN';
    if (error.statusCode >= 500) log[quiet ? 'debug' : 'warn']({ reqId: request.id, code: error.code }, error.message);
    return reply.headers(error.headers).code(error.statusCode).type(JSON_TYPE).send(errorBody(error.message));
  }
  const status = error.statusCode ?? 500;
  if (status < 500) return reply.code(status).type(JSON_TYPE).send(errorBody(error.message));
  log.error({ reqId: request.id, err: error }, 'unexpected error');
  return reply.code(500).type(JSON_TYPE).send(errorBody('internal error'));
}

/** A URL Fastify cannot even route (bad percent-encoding): Fastify's `frameworkErrors`. */
export function answerFrameworkError(error: Error, request: FastifyRequest, reply: FastifyReply): void {
  ownAnswerHeaders(request, reply);
  reply.code(400).type(JSON_TYPE).send(errorBody(`the request could not be read: ${error.message}`));
}

/** Statuses for what Node's HTTP parser refuses, by its error code; anything else is a 400. */
const CLIENT_ERROR_STATUS: Readonly<Record<string, number>> = { HPE_HEADER_OVERFLOW: 431, ERR_HTTP_REQUEST_TIMEOUT: 408 };
const CLIENT_ERROR_MESSAGE: Readonly<Record<number, string>> = {
  400: 'the request could not be read as HTTP',
  408: 'the request took too long to arrive',
  431: 'the request headers are too large',
};

/** Answers a request Node's HTTP parser refused, and closes the connection; the error is not logged: it carries the raw bytes, credentials included. */
export function answerClientError(log: FastifyBaseLogger, error: Error & { code?: string }, socket: Duplex): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const status = CLIENT_ERROR_STATUS[error.code ?? ''] ?? 400;
  let bytes = 0;
  if (socket.writable) {
    const body = errorBody(CLIENT_ERROR_MESSAGE[status] as string);
    bytes = Buffer.byteLength(body);
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: ${JSON_TYPE}\r\nContent-Length: ${bytes}\r\n` +
        `X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  log.info({ route: null, status, bytes, code: error.code }, 'request refused');
  socket.destroy();
}

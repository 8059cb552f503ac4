import { Pool } from 'undici';
import { upstreamInvalid } from '../http/errors.js';

export interface DeskieClientOptions {
  /** Base URL of the Deskie account, such as https://acme.deskie.io (a path prefix is kept). */
  readonly baseUrl: string;
  /** Bound on the whole exchange with Deskie: waiting for a connection, connecting, headers and body. */
  readonly timeoutMs: number;
  /** Largest body read from Deskie; past it the answer is a 502. */
  readonly maxBodyBytes: number;
  readonly connections: number;
}

const firstHeader = (value: string | string[] | undefined): string | undefined =>
  Array.isArray(value) ? value[0] : value;

/** The only way out: GETs to the configured account with the client's Authorization, Accept and the canonical query; never Host, cookies or X-Forwarded-*. */
export class DeskieClient {
  readonly #pool: Pool;
  readonly #pathPrefix: string;
  readonly #options: DeskieClientOptions;

  constructor(options: DeskieClientOptions) {
    const url = new URL(options.baseUrl);
    this.#options = options;
    this.#pathPrefix = url.pathname.replace(/\/+$/, '');
    this.#pool = new Pool(url.origin, {
      connections: options.connections,
      connectTimeout: options.timeoutMs,
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
    });
  }

  /** Deskie's answer, with its limit headers as sent (deskie-api-notes.md, "Rate limits"). */
  async get(path: string, query: string, authorization: string) {
    // One deadline for the whole exchange, the wait for a connection included. Not
    // AbortSignal.timeout(): its timer outlives the answer, holding memory under a storm of misses.
    const deadline = new AbortController();
    const timer = setTimeout(
      () => deadline.abort(new DOMException('Deskie did not answer in time', 'TimeoutError')),
      this.#options.timeoutMs,
    );
    try {
      const response = await this.#pool.request({
        method: 'GET',
        path: `${this.#pathPrefix}${path}${query ? `?${query}` : ''}`,
        headers: { authorization, accept: 'application/json' },
        signal: deadline.signal,
      });
      const chunks: Buffer[] = [];
      let length = 0;
      for await (const chunk of response.body) {
        length += (chunk as Buffer).length;
        if (length > this.#options.maxBodyBytes) {
          response.body.destroy();
          throw upstreamInvalid(`Deskie's answer is larger than ${this.#options.maxBodyBytes} bytes`);
        }
        chunks.push(chunk as Buffer);
      }
      return {
        statusCode: response.statusCode,
        body: Buffer.concat(chunks, length),
        contentType: firstHeader(response.headers['content-type']),
        retryAfter: firstHeader(response.headers['retry_after'] ?? response.headers['retry-after']),
        rateLimitPerMinute: firstHeader(response.headers['rate_limit_per_minute']),
        callsLeft: firstHeader(response.headers['api_calls_left']),
        location: firstHeader(response.headers['location']),
      };
    } finally {
      clearTimeout(timer);
    }
  }

  /** Cuts every call under way short, each failing with `reason` (undici's destroy), and ends the pool. */
  abortAll(reason: Error): void {
    void this.#pool.destroy(reason);
  }

  async close(): Promise<void> {
    if (!this.#pool.destroyed) await this.#pool.close();
  }
}

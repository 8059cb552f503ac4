import fastQueryString from 'fast-querystring';
import { LRUCache } from 'lru-cache';
import { badRequest, type ProxyError, uriTooLong } from '../http/errors.js';

/** Longest query string read; a dashboard's longest real query is a few hundred bytes. */
export const MAX_QUERY_STRING_BYTES = 4096;
/** Most parameters in one query string (100 values of one filter, and the rest). */
export const MAX_QUERY_PARAMETERS = 150;

/** Query strings whose parse is remembered (a fleet's dashboards repeat a few hundred), and the longest remembered. */
const REMEMBERED_QUERY_STRINGS = 1024;
const LONGEST_REMEMBERED_QUERY_STRING = 1024;
const parsed = new LRUCache<string, ParsedQuery>({ max: REMEMBERED_QUERY_STRINGS, memoMethod: (raw) => Object.freeze(parseOnce(raw)) });

/** Where the query string parser leaves its refusal; parseStatsQuery throws it before reading anything. */
export const QUERY_STRING_REFUSAL: unique symbol = Symbol('query string refusal');

/** A parsed query string as Fastify gives it: a repeated name arrives as an array. */
export type RawQuery = Readonly<Record<string, string | readonly string[] | undefined>>;

export type ParsedQuery = RawQuery & { readonly [QUERY_STRING_REFUSAL]?: ProxyError };

/**
 * Fastify's query string parser, bounded: one too long, with too many parameters or undecodable (`%zz`, `%FF%FE`)
 * parses to a refusal the stats routes answer 414 or 400 (a throw would fail inside the router; fast-querystring alone
 * forwards `%zz` encoded twice). The same string gives the same frozen object: the routes remember checks by it.
 */
export function parseQueryString(raw: string): ParsedQuery {
  return raw.length <= LONGEST_REMEMBERED_QUERY_STRING ? parsed.memo(raw) : Object.freeze(parseOnce(raw));
}

function parseOnce(raw: string): ParsedQuery {
  if (raw.length > MAX_QUERY_STRING_BYTES) {
    return refusal(uriTooLong(`the query string is ${raw.length} bytes long; at most ${MAX_QUERY_STRING_BYTES} are accepted`));
  }
  let parameters = 1;
  for (let at = raw.indexOf('&'); at !== -1; at = raw.indexOf('&', at + 1)) parameters += 1;
  if (parameters > MAX_QUERY_PARAMETERS) {
    return refusal(badRequest(`the query string has ${parameters} parameters; at most ${MAX_QUERY_PARAMETERS} are accepted`));
  }
  if (raw.includes('%')) {
    try {
      decodeURIComponent(raw);
    } catch {
      return refusal(
        badRequest('the query string has a malformed percent-encoding: each % must start a %XX escape, and the escapes must spell UTF-8 text'),
      );
    }
  }
  return fastQueryString.parse(raw) as ParsedQuery;
}

const refusal = (error: ProxyError): ParsedQuery => ({ [QUERY_STRING_REFUSAL]: error });

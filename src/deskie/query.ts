import type { LRUCache } from 'lru-cache';
import type { DateTime } from 'luxon';
import { badRequest } from '../http/errors.js';
import { ALL_PAGES, CUSTOM_FIELD, type EndpointSpec, nonEmptyText, type ValueRule } from './endpoints.js';
import { type FreshnessClass, isPeriod, PERIODS, type PeriodWindow, type PeriodWindows } from './periods.js';
import { type ParsedQuery, QUERY_STRING_REFUSAL } from './query-string.js';
import { ACCEPTED_TIME_FORMS, formatDeskieTime, readDeskieTime } from './time.js';

/** Deskie's shortest custom range. */
const MIN_RANGE_MS = 60 * 60 * 1000;
/** Most values one filter takes (`user_id[]=...` repeated). */
export const MAX_VALUES_PER_FILTER = 100;
/** Longest canonical query sent to Deskie: its bound is unknown, and a refusal would spend a call. */
export const MAX_UPSTREAM_QUERY_BYTES = 4096;
/** Custom times are accepted from the first year of this span to the last. */
export const EARLIEST_YEAR = 2000;
export const LATEST_YEAR = 2099;

export type { RawQuery } from './query-string.js';

export interface QueryContext {
  /** Periods' windows in the account time zone, where offset-less times are read too. */
  readonly windows: PeriodWindows;
  /** Custom ranges already resolved, by endpoint and the values as sent (luxon's parsing would dominate a hit). */
  readonly ranges?: LRUCache<string, ResolvedWindow>;
  readonly nowMs: number;
  /** Names the operator allows besides the documented ones; forwarded upstream as given. */
  readonly extraParameters: ReadonlySet<string>;
  /** Names that steer this proxy only: accepted, never forwarded, never part of the key. */
  readonly proxyParameters: ReadonlySet<string>;
}

export interface StatsQuery {
  readonly endpoint: EndpointSpec;
  /** The canonical query, sent upstream and keyed: names and values sorted, duplicates and defaults left out, times absolute. */
  readonly canonicalQuery: string;
  /** `page=all`: fetch every page and merge them into one answer. */
  readonly allPages: boolean;
  /** The canonical parameters without `page` and `limit`, to which each page's are added with `page=all`. */
  readonly pageBase: QueryPairs;
  /** The row of Deskie's cache table that applies. */
  readonly freshness: FreshnessClass;
  /** The absolute window the answer covers. */
  readonly window: PeriodWindow;
  /** The proxy-only parameters, by name. */
  readonly proxy: Readonly<Record<string, string>>;
}

const TIME_PARAMETERS = ['period', 'from_time', 'to_time'] as const;
type TimeParameters = Partial<Record<(typeof TIME_PARAMETERS)[number], string>>;
const isTimeParameter = (name: string): name is keyof TimeParameters =>
  (TIME_PARAMETERS as readonly string[]).includes(name);

/** Canonical or a 400 saying why: nothing unknown reaches Deskie or a cache key. Rules cross fields: no JSON Schema. */
export function parseStatsQuery(endpoint: EndpointSpec, query: ParsedQuery, context: QueryContext): StatsQuery {
  const refused = query[QUERY_STRING_REFUSAL];
  if (refused !== undefined) throw refused;
  const { forwarded, filterValues, proxy, time } = sortParameters(endpoint, query, context);

  // One value goes upstream as name=value, several as name[]=a&name[]=b.
  for (const [filter, values] of filterValues) {
    if (values.size > MAX_VALUES_PER_FILTER) {
      throw badRequest(`filter ${filter} is given ${values.size} values; at most ${MAX_VALUES_PER_FILTER} are accepted`);
    }
    if (values.size === 1) forwarded.push([filter, [...values][0] as string]);
    else for (const value of values) forwarded.push([`${filter}[]`, value]);
  }
  const { parameters, freshness, window } = resolveWindow(endpoint, time, context);
  forwarded.push(...parameters);

  const allPages = forwarded.some(([name, value]) => name === 'page' && value === ALL_PAGES);
  // Page 1 is Deskie's default; every page merged is one answer whatever the page size.
  const keyed = forwarded.filter(([name, value]) => !(name === 'page' && value === FIRST_PAGE) && !(allPages && name === 'limit'));
  const canonicalQuery = canonicalQueryString(keyed);
  if (canonicalQuery.length > MAX_UPSTREAM_QUERY_BYTES) {
    throw badRequest(
      `the query would be ${canonicalQuery.length} bytes long upstream; at most ${MAX_UPSTREAM_QUERY_BYTES} are sent to Deskie: ask with fewer filter values`,
    );
  }
  const pageBase = forwarded.filter(([name]) => name !== 'page' && name !== 'limit');
  return { endpoint, canonicalQuery, allPages, pageBase, freshness, window, proxy };
}

/** Sorts and checks every parameter by its rule; a name the endpoint does not accept is a 400. */
function sortParameters(endpoint: EndpointSpec, query: ParsedQuery, context: QueryContext) {
  // Scalars, custom fields and the operator's extra parameters, as they go upstream.
  const forwarded: Array<readonly [string, string]> = [];
  // Each filter's values, whether written `name=a` or `name[]=a`: one question either way.
  const filterValues = new Map<string, Set<string>>();
  const addFilterValues = (filter: string, values: readonly string[]): void => {
    filterValues.set(filter, new Set([...(filterValues.get(filter) ?? []), ...values]));
  };
  const proxy: Record<string, string> = {};
  const unknown: string[] = [];
  const time: TimeParameters = {};

  for (const [name, raw] of Object.entries(query)) {
    if (raw === undefined) continue;
    const values = typeof raw === 'string' ? [raw] : raw;
    if (values.length > MAX_VALUES_PER_FILTER) {
      throw badRequest(`parameter ${name} is given ${values.length} times; at most ${MAX_VALUES_PER_FILTER} values are accepted`);
    }
    const single = (): string => {
      if (values.length > 1) {
        const hint = Object.hasOwn(endpoint.filters, name) ? `; to filter by several values use ${name}[]=a&${name}[]=b` : '';
        throw badRequest(`parameter ${name} is given ${values.length} times; give it once${hint}`);
      }
      return values[0] as string;
    };
    const checked = (rule: ValueRule, value: string): string => {
      if (!rule.test(value)) throw badRequest(`${name} must be ${rule.accepted}; got ${JSON.stringify(value)}`);
      return value;
    };
    const arrayOf = name.endsWith('[]') ? name.slice(0, -2) : undefined;
    const arrayRule = arrayOf !== undefined && Object.hasOwn(endpoint.filters, arrayOf) ? endpoint.filters[arrayOf] : undefined;

    if (context.proxyParameters.has(name)) {
      proxy[name] = single();
    } else if (isTimeParameter(name)) {
      time[name] = single();
    } else if (arrayOf !== undefined && arrayRule !== undefined) {
      addFilterValues(arrayOf, values.map((value) => checked(arrayRule, value)));
    } else if (Object.hasOwn(endpoint.filters, name)) {
      addFilterValues(name, [checked(endpoint.filters[name] as ValueRule, single())]);
    } else if (Object.hasOwn(endpoint.scalars, name)) {
      forwarded.push([name, checked(endpoint.scalars[name] as ValueRule, single())]);
    } else if (endpoint.customFields && CUSTOM_FIELD.test(name)) {
      forwarded.push([name, checked(nonEmptyText, single())]);
    } else if (context.extraParameters.has(name)) {
      for (const value of new Set(values)) forwarded.push([name, value]);
    } else {
      unknown.push(name);
    }
  }

  if (unknown.length > 0) {
    throw badRequest(
      `unknown parameter${unknown.length > 1 ? 's' : ''} ${unknown.sort().join(', ')}; ` +
        `${endpoint.path} accepts ${acceptedNames(endpoint, context).join(', ')}`,
    );
  }
  return { forwarded, filterValues, proxy, time };
}

/** Query parameters as name-value pairs, a name repeated for each of its values. */
export type QueryPairs = ReadonlyArray<readonly [string, string]>;

/** Deskie's first page, the one it answers when no page is asked for. */
const FIRST_PAGE = '1';

/** The one builder of query strings sent upstream and keyed: sorted by name, then value. */
export function canonicalQueryString(pairs: QueryPairs): string {
  return [...pairs]
    .sort(([a, av], [b, bv]) => (a < b ? -1 : a > b ? 1 : av < bv ? -1 : av > bv ? 1 : 0))
    .map(([name, value]) => `${encodeURIComponent(name)}=${encodeURIComponent(value)}`)
    .join('&');
}

export interface ResolvedWindow {
  readonly parameters: QueryPairs;
  readonly freshness: FreshnessClass;
  readonly window: PeriodWindow;
}

function resolveWindow(endpoint: EndpointSpec, time: TimeParameters, context: QueryContext): ResolvedWindow {
  const { period, from_time: fromTime, to_time: toTime } = time;
  if (period !== undefined) {
    if (fromTime !== undefined || toTime !== undefined) {
      throw badRequest('give either period or from_time and to_time, not both');
    }
    if (!isPeriod(period)) {
      throw badRequest(`period must be one of ${PERIODS.join(', ')}; got ${JSON.stringify(period)}`);
    }
    const window = context.windows.at(period, context.nowMs);
    return { parameters: [['period', period]], freshness: period, window };
  }

  if (fromTime === undefined || toTime === undefined) {
    throw badRequest(`give period (one of ${PERIODS.join(', ')}) or both from_time and to_time`);
  }
  const memoKey = `${endpoint.name}\0${fromTime}\0${toTime}`;
  const remembered = context.ranges?.get(memoKey);
  if (remembered) return remembered;
  const resolved = resolveRange(endpoint, fromTime, toTime, context.windows.zone);
  context.ranges?.set(memoKey, resolved);
  return resolved;
}

function resolveRange(endpoint: EndpointSpec, fromTime: string, toTime: string, zone: string): ResolvedWindow {
  const from = parseTime('from_time', fromTime, zone);
  const to = parseTime('to_time', toTime, zone);
  if (to <= from) throw badRequest('to_time must be after from_time');
  if (to.toMillis() - from.toMillis() < MIN_RANGE_MS) {
    throw badRequest('the range from from_time to to_time must be at least 1 hour long');
  }
  if (to > from.plus(endpoint.maxRange)) {
    throw badRequest(`the range from from_time to to_time must be at most ${endpoint.maxRangeText} long on ${endpoint.path}`);
  }
  return {
    parameters: [
      ['from_time', formatDeskieTime(from)],
      ['to_time', formatDeskieTime(to)],
    ],
    freshness: to <= from.plus({ days: 1 }) ? 'custom_up_to_1_day' : 'custom_longer',
    window: { from, to, changesAt: null },
  };
}

function parseTime(name: string, value: string, zone: string): DateTime {
  const parsed = readDeskieTime(value, zone);
  if (parsed === 'not-a-time') throw badRequest(`${name} must be ${ACCEPTED_TIME_FORMS}; got ${JSON.stringify(value)}`);
  if (parsed === 'skipped-by-dst') {
    throw badRequest(`${name} ${JSON.stringify(value)} does not exist in ${zone}: its clocks skip that hour for daylight saving time`);
  }
  // Deskie holds no statistics from before its time, and a year like 5138 is a typo.
  if (parsed.year < EARLIEST_YEAR || parsed.year > LATEST_YEAR) {
    throw badRequest(`${name} must fall in the years ${EARLIEST_YEAR} to ${LATEST_YEAR}; got ${JSON.stringify(value)}`);
  }
  return parsed;
}

function acceptedNames(endpoint: EndpointSpec, context: QueryContext): string[] {
  return [
    ...TIME_PARAMETERS,
    ...Object.keys(endpoint.filters).map((name) => `${name} (or ${name}[])`),
    ...Object.keys(endpoint.scalars),
    ...(endpoint.customFields ? ['custom_fields[cf_N]'] : []),
    ...context.extraParameters,
    ...context.proxyParameters,
  ];
}

import type { DurationLike } from 'luxon';

/**
 * What Deskie's three statistics endpoints accept (deskie-api-stats.txt and
 * deskie-api-notes.md). Filters are forwarded as they are; the few parameters
 * with documented values are checked here so that a typo is a 400 from us
 * rather than a request that spends the account's rate limit.
 */
export type EndpointName = 'leaderboard' | 'staff_statuses' | 'satisfaction';

export interface ValueRule {
  /** Returns true when the value is acceptable. */
  readonly test: (value: string) => boolean;
  /** What is accepted, for the error message. */
  readonly accepted: string;
}

export interface EndpointSpec {
  readonly name: EndpointName;
  readonly path: string;
  /** Longest custom range Deskie accepts (calendar arithmetic in the account time zone). */
  readonly maxRange: DurationLike;
  readonly maxRangeText: string;
  /** Filters that may be repeated as `name[]=a&name[]=b`, as well as given once as `name=a`. */
  readonly filters: readonly string[];
  /** Single-valued parameters, some with a rule for their value. */
  readonly scalars: Readonly<Record<string, ValueRule | null>>;
  /** Whether `custom_fields[cf_N]` filters are accepted. */
  readonly customFields: boolean;
  /**
   * How Deskie pages this endpoint, for `page=all`: `last_page` (follow pages
   * until the body says `last_page: true`), `total_count` (pages of `limit`
   * records up to `total_count`), or null when it does not page.
   */
  readonly pagination: 'last_page' | 'total_count' | null;
}

/** Largest page Deskie serves for satisfaction; `page=all` asks for it to need the fewest calls. */
export const SATISFACTION_MAX_LIMIT = 100;

/** `all` asks this server for every page of the period, merged into one answer. */
export const ALL_PAGES = 'all';

const pageNumber: ValueRule = {
  test: (value) => /^[1-9]\d{0,8}$/.test(value) || value === ALL_PAGES,
  accepted: `a positive integer, or ${ALL_PAGES} for every page merged into one answer`,
};

const satisfactionLimit: ValueRule = {
  test: (value) => /^[1-9]\d{0,2}$/.test(value) && Number(value) <= SATISFACTION_MAX_LIMIT,
  accepted: 'an integer from 1 to 100',
};

const satisfactionSort: ValueRule = {
  test: (value) => value === 'added_at_desc' || value === 'added_at_asc',
  accepted: 'added_at_desc or added_at_asc',
};

/** Case filters shared by the leaderboard and satisfaction (public clients of the API). */
const CASE_FILTERS = [
  'group_id',
  'staff_id',
  'participant_id',
  'assignee_role_id',
  'participant_role_id',
  'status',
  'priority',
  'labels',
  'initiator',
  'user_id',
  'company_id',
  'channel',
] as const;

export const ENDPOINTS: Readonly<Record<EndpointName, EndpointSpec>> = {
  leaderboard: {
    name: 'leaderboard',
    path: '/api/stats_leaderboard.json',
    maxRange: { months: 3 },
    maxRangeText: '3 months',
    filters: CASE_FILTERS,
    scalars: {},
    customFields: true,
    pagination: null,
  },
  staff_statuses: {
    name: 'staff_statuses',
    path: '/api/stats_staff_statuses.json',
    maxRange: { months: 1 },
    maxRangeText: '1 month',
    filters: ['staff_id'],
    scalars: { staff_access: null, page: pageNumber },
    customFields: false,
    pagination: 'last_page',
  },
  satisfaction: {
    name: 'satisfaction',
    path: '/api/stats_satisfaction.json',
    maxRange: { months: 3 },
    maxRangeText: '3 months',
    filters: [...CASE_FILTERS, 'rating_id', 'rating', 'rated_staff_id', 'rated_assignee_role_id'],
    scalars: {
      rating_comment: null,
      user_email: null,
      user_phone: null,
      page: pageNumber,
      limit: satisfactionLimit,
      sort: satisfactionSort,
    },
    customFields: true,
    pagination: 'total_count',
  },
};

export const CUSTOM_FIELD = /^custom_fields\[cf_\d+\]$/;

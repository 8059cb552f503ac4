import type { DurationLike } from 'luxon';

/** What Deskie's endpoints accept (deskie-api-stats.txt, -notes.md): a typo is our 400, not a rate-limited call. */
export type EndpointName = 'leaderboard' | 'staff_statuses' | 'satisfaction';

export interface ValueRule {
  readonly test: (value: string) => boolean;
  /** What is accepted, for the error message. */
  readonly accepted: string;
  // What `test` checks, as data for the API description (routes/docs.ts); `test` is built from the same constants.
  /** Values accepted as they are written. */
  readonly values?: readonly string[];
  /** The pattern every other accepted value matches. */
  readonly pattern?: RegExp;
  /** Bounds of a value `pattern` reads as an integer. */
  readonly minimum?: number;
  readonly maximum?: number;
  /** Bounds of a text value's length, in UTF-16 code units as `String.length` counts them. */
  readonly minLength?: number;
  readonly maxLength?: number;
  /** Typical values, for the API description. */
  readonly examples?: readonly string[];
}

export interface EndpointSpec {
  readonly name: EndpointName;
  readonly path: string;
  /** Longest custom range Deskie accepts (calendar arithmetic in the account time zone). */
  readonly maxRange: DurationLike;
  readonly maxRangeText: string;
  /** Filters that may be repeated as `name[]=a&name[]=b`, as well as given once as `name=a`; the rule applies to each value. */
  readonly filters: Readonly<Record<string, ValueRule>>;
  /** Single-valued parameters. */
  readonly scalars: Readonly<Record<string, ValueRule>>;
  /** Whether `custom_fields[cf_N]` filters are accepted. */
  readonly customFields: boolean;
  /** How Deskie pages this endpoint, for `page=all` (see all-pages.ts); null when it does not page. */
  readonly pagination: 'last_page' | 'total_count' | null;
}

/** Largest page Deskie serves for satisfaction, and its default; `page=all` asks for it to need the fewest calls. */
export const SATISFACTION_MAX_LIMIT = 100;
/** Deskie sends 100 status changes a page (deskie-api-stats.txt, "Pagination"). */
export const STAFF_STATUS_PAGE_SIZE = 100;

/** `all` asks this server for every page of the period, merged into one answer. */
export const ALL_PAGES = 'all';

const PAGE_NUMBER = /^[1-9]\d{0,8}$/;
const pageNumber: ValueRule = {
  test: (value) => PAGE_NUMBER.test(value) || value === ALL_PAGES,
  accepted: `a positive integer, or ${ALL_PAGES} for every page merged into one answer`,
  values: [ALL_PAGES],
  pattern: PAGE_NUMBER,
  examples: ['2', ALL_PAGES],
};

const LIMIT = /^[1-9]\d{0,2}$/;
const satisfactionLimit: ValueRule = {
  test: (value) => LIMIT.test(value) && Number(value) <= SATISFACTION_MAX_LIMIT,
  accepted: 'an integer from 1 to 100',
  pattern: LIMIT,
  minimum: 1,
  maximum: SATISFACTION_MAX_LIMIT,
};

const oneOf = (...values: string[]): ValueRule => ({
  test: (value) => values.includes(value),
  accepted: values.length === 2 ? `${values[0]} or ${values[1]}` : `one of ${values.join(', ')}`,
  values,
});

/** No leading zeros: an id written two ways (`01`, `1`) would make two cache entries. */
const ID = /^(0|[1-9]\d{0,17})$/;
const id: ValueRule = {
  test: (value) => ID.test(value),
  accepted: 'a numeric id without leading zeros',
  pattern: ID,
};

const EVERY_STAFF = 'all';
const staffId: ValueRule = {
  test: (value) => value === EVERY_STAFF || id.test(value),
  accepted: 'a numeric id or all',
  values: [EVERY_STAFF],
  pattern: ID,
};

const CHANNEL = /^([a-z][a-z_]{1,31}|cch[1-9]\d{0,17})$/;
/** Named channels and groups are open-ended in Deskie; custom channels are cch<id>. */
const channel: ValueRule = {
  test: (value) => CHANNEL.test(value),
  accepted: 'a channel such as email, web, call, live_chat or telegram, a group (sync, async, social, messengers), or cch<id>',
  pattern: CHANNEL,
  examples: ['email', 'telegram', 'live_chat', 'messengers', 'cch42'],
};

const TEXT_MAX_LENGTH = 500;
export const nonEmptyText: ValueRule = {
  test: (value) => value.length > 0 && value.length <= TEXT_MAX_LENGTH,
  accepted: 'non-empty text of at most 500 characters',
  minLength: 1,
  maxLength: TEXT_MAX_LENGTH,
};

/** Case filters shared by the leaderboard and satisfaction (public clients of the API). */
const CASE_FILTERS: Readonly<Record<string, ValueRule>> = {
  group_id: id,
  staff_id: staffId,
  participant_id: id,
  assignee_role_id: id,
  participant_role_id: id,
  status: oneOf('open', 'waiting', 'closed'),
  priority: oneOf('low', 'normal', 'high', 'critical'),
  labels: id,
  initiator: oneOf('user', 'agent'),
  user_id: id,
  company_id: id,
  channel,
};

const satisfactionSort = oneOf('added_at_desc', 'added_at_asc');

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
    filters: { staff_id: staffId },
    scalars: { staff_access: nonEmptyText, page: pageNumber },
    customFields: false,
    pagination: 'last_page',
  },
  satisfaction: {
    name: 'satisfaction',
    path: '/api/stats_satisfaction.json',
    maxRange: { months: 3 },
    maxRangeText: '3 months',
    filters: { ...CASE_FILTERS, rating_id: id, rating: oneOf('low', 'middle', 'high'), rated_staff_id: id, rated_assignee_role_id: id },
    scalars: {
      rating_comment: nonEmptyText,
      user_email: nonEmptyText,
      user_phone: nonEmptyText,
      page: pageNumber,
      limit: satisfactionLimit,
      sort: satisfactionSort,
    },
    customFields: true,
    pagination: 'total_count',
  },
};

/** `custom_fields[cf_N]`: the name before the brackets, and the key inside them. */
export const CUSTOM_FIELDS_PARAMETER = 'custom_fields';
export const CUSTOM_FIELD_KEY = /^cf_[1-9]\d{0,17}$/;
export const CUSTOM_FIELD = new RegExp(`^${CUSTOM_FIELDS_PARAMETER}\\[${CUSTOM_FIELD_KEY.source.slice(1, -1)}\\]$`);

/** A statistics path's route label, in access lines and metrics: Deskie's name for it (`stats_leaderboard`). */
export const routeLabel = (path: string): string => path.replace(/^\/api\/|\.json$/g, '');

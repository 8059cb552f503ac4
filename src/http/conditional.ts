import type { IncomingHttpHeaders } from 'node:http';

/** IMF-fixdate, the form HTTP dates are written in (RFC 9110 §5.6.7): what Last-Modified and Retry-After carry. */
export const HTTP_DATE = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$/;

/** RFC 9110 §13.1.2-3: If-None-Match (weak) first, else If-Modified-Since if an HTTP-date ("3000" parses as a year). */
export function notModified(headers: IncomingHttpHeaders, etag: string, lastModifiedMs: number): boolean {
  const ifNoneMatch = headers['if-none-match'];
  if (ifNoneMatch !== undefined) {
    if (ifNoneMatch.trim() === '*') return true;
    return ifNoneMatch.split(',').some((tag) => tag.trim().replace(/^W\//, '') === etag);
  }
  const ifModifiedSince = headers['if-modified-since'];
  if (ifModifiedSince === undefined || !HTTP_DATE.test(ifModifiedSince)) return false;
  return Math.floor(lastModifiedMs / 1000) * 1000 <= Date.parse(ifModifiedSince);
}

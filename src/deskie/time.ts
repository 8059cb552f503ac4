import { DateTime } from 'luxon';

/** `from_time`/`to_time` forms (deskie-api-notes.md): no offset means the account zone; a date alone, its start. */
export const ACCEPTED_TIME_FORMS =
  "'YYYY-MM-DD HH:MM:SS' (optionally followed by ' +HHMM'), 'YYYY-MM-DD HH:MM', 'YYYY-MM-DD', " +
  "'DD.MM.YYYY' (optionally with ' HH:MM' or ' HH:MM:SS'), or a unix timestamp in seconds";

/** luxon formats tried in order, for each form of the date; `ZZZ` is an offset written as +HHMM. */
const FORMATS: readonly string[] = ['yyyy-MM-dd', 'dd.MM.yyyy'].flatMap((date) => [
  `${date} HH:mm:ss ZZZ`,
  `${date} HH:mm:ss`,
  `${date} HH:mm`,
  date,
]);

const UNIX_SECONDS = /^\d{1,11}$/;
/** A cheap shape check so that only plausible strings reach luxon's parser; offsets run from -14:00 to +14:00. */
const DATE_SHAPE = /^(\d{4}-\d{2}-\d{2}|\d{2}\.\d{2}\.\d{4})( \d{2}:\d{2}(:\d{2}( [+-](0\d|1[0-4])[0-5]\d)?)?)?$/;

/** A local time DST skips (2026-03-29 02:30, Berlin) is reported: luxon would silently move it an hour on. */
export function readDeskieTime(value: string, zone: string): DateTime | 'not-a-time' | 'skipped-by-dst' {
  if (UNIX_SECONDS.test(value)) return DateTime.fromSeconds(Number(value), { zone });
  if (!DATE_SHAPE.test(value)) return 'not-a-time';
  for (const format of FORMATS) {
    const parsed = DateTime.fromFormat(value, format, { zone, setZone: false });
    if (!parsed.isValid) continue;
    if (!format.includes('ZZZ') && parsed.setZone(zone).toFormat(format) !== value) return 'skipped-by-dst';
    return parsed.setZone(zone);
  }
  return 'not-a-time';
}

/** The form this server sends upstream: absolute, with the offset, so Deskie reads the same instant we keyed. */
export function formatDeskieTime(time: DateTime): string {
  return time.toFormat('yyyy-MM-dd HH:mm:ss ZZZ');
}

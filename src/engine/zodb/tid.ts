/**
 * ZODB transaction ids (TimeStamps) and repozo stamps.
 *
 * A tid is 8 bytes: the high 4 are the UTC minute counted from 1900-01-01
 * (((year-1900)*12 + month-1)*31 + day-1)*24 + hour)*60 + minute, with 31-day
 * months), the low 4 the seconds within that minute scaled to 2^32/60.
 */

import { PloneBackupError } from '../base/errors';

const SECONDS_SCALE = 60 / 2 ** 32;

/** The UTC time a tid stands for (millisecond precision). */
export function tidToDate(tid: Buffer): Date {
  const hi = tid.readUInt32BE(0);
  const lo = tid.readUInt32BE(4);
  const minute = hi % 60;
  let rest = Math.floor(hi / 60);
  const hour = rest % 24;
  rest = Math.floor(rest / 24);
  const day = (rest % 31) + 1;
  rest = Math.floor(rest / 31);
  const month = rest % 12;
  const year = Math.floor(rest / 12) + 1900;
  const ms = Date.UTC(year, month, day, hour, minute, 0) + lo * SECONDS_SCALE * 1000;
  return new Date(Math.floor(ms));
}

/** The tid for a UTC time, as ZODB's TimeStamp(y, m, d, h, mi, s) makes it. */
export function dateToTid(date: Date): Buffer {
  const hi = ((((date.getUTCFullYear() - 1900) * 12 + date.getUTCMonth()) * 31 + date.getUTCDate() - 1) * 24 + date.getUTCHours()) * 60 + date.getUTCMinutes();
  const seconds = date.getUTCSeconds() + date.getUTCMilliseconds() / 1000;
  const lo = Math.min(0xffffffff, Math.floor(seconds / SECONDS_SCALE));
  const tid = Buffer.alloc(8);
  tid.writeUInt32BE(hi, 0);
  tid.writeUInt32BE(lo, 4);
  return tid;
}

/** The smallest tid greater than `tid` (ZODB's TimeStamp.laterThan). */
export function nextTid(tid: Buffer): Buffer {
  const out = Buffer.from(tid);
  for (let i = 7; i >= 0; i--) {
    if (out[i] !== 0xff) {
      out[i] = out[i]! + 1;
      return out;
    }
    out[i] = 0;
  }
  throw new RangeError('tid overflow');
}

/** A tid that is later than both `now` and `after` (the writer's new-transaction id). */
export function newTid(now: Date, after?: Buffer): Buffer {
  const t = dateToTid(now);
  if (after && Buffer.compare(t, after) <= 0) return nextTid(after);
  return t;
}

/** ZODB's oid_repr / tid_repr: 0x + hex, leading zeros stripped, even length, at least 2 digits. */
export function idRepr(id: Buffer): string {
  let hex = id.toString('hex').replace(/^0+/, '');
  if (hex === '') hex = '00';
  else if (hex.length % 2 === 1) hex = '0' + hex;
  return '0x' + hex;
}

export function hex(id: Buffer): string {
  return id.toString('hex');
}

// ---------------------------------------------------------------------------
// repozo stamps: YYYY-MM-DD-HH-MM-SS in UTC

const STAMP_RE = /^(\d{4})-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$/;

export function formatStamp(date: Date): string {
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${p(date.getUTCFullYear(), 4)}-${p(date.getUTCMonth() + 1)}-${p(date.getUTCDate())}-` + `${p(date.getUTCHours())}-${p(date.getUTCMinutes())}-${p(date.getUTCSeconds())}`;
}

export function isStamp(s: string): boolean {
  const m = STAMP_RE.exec(s);
  if (!m) return false;
  const d = parseStamp(s);
  return formatStamp(d) === s;
}

export function parseStamp(stamp: string): Date {
  const m = STAMP_RE.exec(stamp);
  if (!m) throw new PloneBackupError('DATE_BAD', `"${stamp}" is not a backup stamp (YYYY-MM-DD-HH-MM-SS).`);
  const [y, mo, d, h, mi, s] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  return new Date(Date.UTC(y, mo - 1, d, h, mi, s));
}

/** The stamp one second after `stamp`. */
export function nextStamp(stamp: string): string {
  return formatStamp(new Date(parseStamp(stamp).getTime() + 1000));
}

const DATE_ARG_RE = /^(\d{4})-(\d\d)-(\d\d)(?:-(\d\d)(?:-(\d\d)(?:-(\d\d))?)?)?$/;

/**
 * Checks a repozo -D value (yyyy-mm-dd[-hh[-mm[-ss]]], UTC) and returns it in the
 * form repozo compares with stamps: as a string, so "2026-01-03" means
 * "before 2026-01-03-00-00-00". ISO forms ("2026-01-03T10:00", "2026-01-03 10:00:00")
 * are accepted and normalised to the dashed form.
 */
export function normalizeDateArg(arg: string): string {
  const s = arg.trim().replace(/[T ]/, '-').replace(/:/g, '-').replace(/Z$/, '');
  const m = DATE_ARG_RE.exec(s);
  if (!m) {
    throw new PloneBackupError('DATE_BAD', `"${arg}" is not a date repozo understands.`, {
      hint: 'Use yyyy-mm-dd[-hh[-mm[-ss]]] in UTC, for example 2026-01-03-10-00.',
    });
  }
  const [y, mo, d, h, mi, sec] = m.slice(1, 7).map((v) => (v === undefined ? 0 : Number(v))) as [number, number, number, number, number, number];
  const dt = new Date(Date.UTC(y, mo - 1, d, h, mi, sec));
  if (dt.getUTCFullYear() !== y || dt.getUTCMonth() !== mo - 1 || dt.getUTCDate() !== d || h > 23 || mi > 59 || sec > 59) {
    throw new PloneBackupError('DATE_BAD', `"${arg}" is not a valid date.`, {
      hint: 'Use yyyy-mm-dd[-hh[-mm[-ss]]] in UTC, for example 2026-01-03-10-00.',
    });
  }
  return s;
}

const LOCAL_DATE_RE = /^(\d{4})-(\d\d)-(\d\d)(?:[T -](\d\d)(?:[:-](\d\d)(?:[:-](\d\d))?)?)?$/;

/**
 * A date a person typed in local time, as the repozo date of that moment (a
 * full UTC stamp, compared as repozo compares -D): `2026-12-01 07:21` in
 * Europe/Berlin is `2026-12-01-06-21-00`. With a `Z` or `UTC` suffix the
 * date is UTC already. Accepted: yyyy-mm-dd, then optionally hh, mm, ss
 * separated by `:`, `-`, a space or `T`. A time that does not exist here (the
 * hour skipped when clocks go forward) is DATE_BAD.
 */
export function localDateArg(text: string): string {
  let t = text.trim();
  const utc = /\s*(Z|UTC)$/i.exec(t);
  if (utc) t = t.slice(0, utc.index);
  const m = LOCAL_DATE_RE.exec(t);
  const bad = (why: string) =>
    new PloneBackupError('DATE_BAD', `"${text}" ${why}.`, { hint: 'Type yyyy-mm-dd hh:mm[:ss] in local time, or end it with Z for UTC; for example 2026-01-03 10:00.' });
  if (!m) throw bad('is not a date');
  const [y, mo, d, h, mi, sec] = m.slice(1, 7).map((v) => (v === undefined ? 0 : Number(v))) as [number, number, number, number, number, number];
  const day = new Date(Date.UTC(y, mo - 1, d));
  if (day.getUTCMonth() !== mo - 1 || day.getUTCDate() !== d || h > 23 || mi > 59 || sec > 59) throw bad('is not a valid date');
  const when = utc ? new Date(Date.UTC(y, mo - 1, d, h, mi, sec)) : new Date(y, mo - 1, d, h, mi, sec);
  const back = utc
    ? [when.getUTCFullYear(), when.getUTCMonth(), when.getUTCDate(), when.getUTCHours(), when.getUTCMinutes()]
    : [when.getFullYear(), when.getMonth(), when.getDate(), when.getHours(), when.getMinutes()];
  if (back.join() !== [y, mo - 1, d, h, mi].join()) throw bad(utc ? 'is not a valid date' : 'is not a time that exists here (clocks were put forward)');
  return formatStamp(when);
}

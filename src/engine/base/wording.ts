/**
 * How results read, for the CLI and the extension alike: sizes, plurals,
 * stamps in local time, ages, progress lines. One wording, so a size or a
 * time reads the same in a terminal and in the editor.
 */

import { format, formatDistanceToNow } from 'date-fns';
import { parseStamp } from '../zodb/tid';

/** Bytes as a person reads them: 0 B, 1.5 KB, 20.0 MB (powers of 1024). */
export function humanBytes(n: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

/** "1 file", "3 files". */
export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/**
 * The short name of this machine's time zone at `d` ("CET", "EST", "GMT+5:30"),
 * or '' where local time is UTC: then nothing needs saying.
 */
export function zoneName(d: Date): string {
  if (d.getTimezoneOffset() === 0) return '';
  const name = (locale: string) => new Intl.DateTimeFormat(locale, { timeZoneName: 'short' }).formatToParts(d).find((p) => p.type === 'timeZoneName')?.value ?? '';
  // en-US names the American zones (EST), en-GB the European ones (CET); others stay GMT+x.
  const us = name('en-US');
  if (!us.startsWith('GMT')) return us;
  const gb = name('en-GB');
  return gb && !gb.startsWith('GMT') && !gb.startsWith('UTC') ? gb : us;
}

/**
 * A repozo stamp (UTC) in local time, as `yyyy-mm-dd hh:mm:ss` followed by the
 * zone's name where local time is not UTC ("2026-12-01 07:20:20 CET"): one
 * clock for everything a person reads. `time: true` leaves the date out.
 */
export function localTime(stamp: string, opts: { time?: boolean } = {}): string {
  return formatLocal(parseStamp(stamp), opts);
}

/** A moment in local time, as localTime words a stamp. */
export function formatLocal(d: Date, opts: { time?: boolean } = {}): string {
  const zone = zoneName(d);
  return `${format(d, opts.time ? 'HH:mm:ss' : 'yyyy-MM-dd HH:mm:ss')}${zone ? ` ${zone}` : ''}`;
}

/** How long ago a stamp was: "5 minutes ago", "about 3 hours ago". */
export function age(stamp: string): string {
  return formatDistanceToNow(parseStamp(stamp), { addSuffix: true });
}

/** One progress line: "copying Data.fs: 12.0 MB of 40.0 MB 30%". */
export function progressLine(p: { phase: string; done: number; total?: number }): string {
  const pct = p.total ? ` ${Math.min(100, Math.floor((p.done / p.total) * 100))}%` : '';
  return `${p.phase}: ${humanBytes(p.done)}${p.total ? ` of ${humanBytes(p.total)}` : ''}${pct}`;
}

/**
 * A stamp as a short row label, in local time with the zone where it is not
 * UTC: "07:20:20 CET" today, "Yesterday 07:20:20 CET", "Mon 07:20:20 CET"
 * within the week, "2026-11-20 07:20 CET" before. `now` for tests.
 */
export function compactTime(stamp: string, now: Date = new Date()): string {
  const d = parseStamp(stamp);
  const zone = zoneName(d);
  const day = (x: Date) => new Date(x.getFullYear(), x.getMonth(), x.getDate()).getTime();
  const days = Math.round((day(now) - day(d)) / 86_400_000);
  const text =
    days === 0 ? format(d, 'HH:mm:ss') : days === 1 ? `Yesterday ${format(d, 'HH:mm:ss')}` : days > 1 && days < 7 ? format(d, 'EEE HH:mm:ss') : format(d, 'yyyy-MM-dd HH:mm');
  return zone ? `${text} ${zone}` : text;
}

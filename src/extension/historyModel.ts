/**
 * The Backup History's data, computed from what the extension already holds:
 * the engine's listing of each deployment (listDeployment's StorageViews) and
 * its run log (readRuns). Per storage: every generation on a time axis (full
 * backups, packs), the Data.fs size and transaction count at each, and the
 * gaps between backups longer than expected; per deployment: the failed runs
 * and the drills. No vscode import: tested with node's test runner
 * (test/extension/unit/historyModel.test.ts); historyChart.ts draws it.
 */

import { parseStamp, type InstalledSchedule, type Kind, type RunRecord, type StorageView } from '../engine';

export interface HistoryPoint {
  storage: string;
  kind: Kind;
  stamp: string;
  /** The stamp's time, ms since the epoch. */
  t: number;
  full: boolean;
  /** The Data.fs size when it was backed up (where the piece ends). */
  size: number;
  /** Transactions in Data.fs then: its chain's full piece and the incrementals up to it. */
  transactions: number;
  /** Transactions in this piece. */
  pieceTransactions: number;
  /** Bytes of the piece on disk. */
  diskSize: number;
  /** Data.fs was smaller than at the generation before: it was packed in between. */
  pack: boolean;
  /** The piece's or its blob generation's problem, if any. */
  problem?: string;
  /** The live Data.fs is this state. */
  live: boolean;
  lastDescription?: string;
}

export interface HistoryGap {
  storage: string;
  from: number;
  /** The next backup, or now for a gap still open. */
  to: number;
  seconds: number;
  /** No backup since `from`. */
  open: boolean;
}

export interface HistoryRun {
  t: number;
  command: RunRecord['command'];
  outcome: RunRecord['outcome'];
  via?: string;
  host: string;
  error?: string;
  code?: string;
  drill: boolean;
  storages: string[];
  /** The drilled (or backed-up) stamp of the first storage. */
  stamp?: string;
}

export interface StorageHistory {
  storage: string;
  points: HistoryPoint[];
  gaps: HistoryGap[];
}

export interface Expected {
  /** A gap is a time between regular backups longer than this, in seconds. */
  limit?: number;
  /** schedule: from the schedule's interval; median: three times the median interval; none: too few backups to say. */
  from: 'schedule' | 'median' | 'none';
  /** The interval it comes from, seconds. */
  interval?: number;
}

export interface SectionHistory {
  root: string;
  name: string;
  storages: StorageHistory[];
  /** Failed runs (any command) and drills (any outcome), oldest first. */
  runs: HistoryRun[];
  expected: Expected;
}

export interface HistoryData {
  now: number;
  from: number;
  to: number;
  sections: SectionHistory[];
}

export interface HistoryInput {
  root: string;
  name: string;
  views: readonly StorageView[];
  runs: readonly RunRecord[];
  /** Per storage, the stamp the live Data.fs equals. */
  live?: ReadonlyMap<string, string>;
  /** The schedule's interval in seconds, when one is known. */
  scheduleSeconds?: number;
}

/** A gap against a schedule: a missed run (half an interval of slack for a slow or late one). */
export const SCHEDULE_SLACK = 1.5;
/** Without a schedule: this many times the median interval. */
export const MEDIAN_FACTOR = 3;

export function median(xs: readonly number[]): number | undefined {
  if (!xs.length) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** How long a time between backups may be before it is a gap: see Expected. `times` in ms, sorted. */
export function expectedInterval(times: readonly number[], scheduleSeconds?: number): Expected {
  if (scheduleSeconds && scheduleSeconds > 0) return { limit: scheduleSeconds * SCHEDULE_SLACK, from: 'schedule', interval: scheduleSeconds };
  const intervals: number[] = [];
  for (let i = 1; i < times.length; i++) intervals.push((times[i]! - times[i - 1]!) / 1000);
  // One interval is no habit yet.
  const m = intervals.length >= 2 ? median(intervals.filter((x) => x > 0)) : undefined;
  if (!m) return { from: 'none' };
  return { limit: m * MEDIAN_FACTOR, from: 'median', interval: m };
}

/** The times between backups (ms, sorted) longer than `limit` seconds, and the open one up to `now`. */
export function findGaps(storage: string, times: readonly number[], limit: number | undefined, now: number): HistoryGap[] {
  if (!limit || !times.length) return [];
  const out: HistoryGap[] = [];
  for (let i = 1; i < times.length; i++) {
    const seconds = (times[i]! - times[i - 1]!) / 1000;
    if (seconds > limit) out.push({ storage, from: times[i - 1]!, to: times[i]!, seconds, open: false });
  }
  const last = times.at(-1)!;
  if ((now - last) / 1000 > limit) out.push({ storage, from: last, to: now, seconds: (now - last) / 1000, open: true });
  return out;
}

/** Every generation of a storage as a point, oldest first, with the transactions in Data.fs at each and packs marked. */
export function storagePoints(view: StorageView, live?: string): HistoryPoint[] {
  const points: HistoryPoint[] = [];
  for (const group of view.groups) {
    for (const chain of group.chains) {
      let transactions = 0;
      for (const g of [chain.full, ...chain.incrementals]) {
        transactions += g.transactions;
        points.push({
          storage: view.storage,
          kind: group.kind,
          stamp: g.stamp,
          t: parseStamp(g.stamp).getTime(),
          full: g.full,
          size: g.end,
          transactions,
          pieceTransactions: g.transactions,
          diskSize: g.diskSize,
          pack: false,
          ...(g.problem ? { problem: g.problem } : {}),
          live: group.kind === 'backup' && live === g.stamp,
          ...(g.lastDescription ? { lastDescription: g.lastDescription } : {}),
        });
      }
    }
  }
  points.sort((a, b) => a.t - b.t || a.kind.localeCompare(b.kind));
  for (let i = 1; i < points.length; i++) if (points[i]!.size < points[i - 1]!.size) points[i]!.pack = true;
  return points;
}

export function historyRuns(runs: readonly RunRecord[]): HistoryRun[] {
  return runs
    .filter((r) => r.outcome === 'failed' || r.command === 'drill')
    .map((r) => ({
      t: Date.parse(r.end),
      command: r.command,
      outcome: r.outcome,
      ...(r.via ? { via: r.via } : {}),
      host: r.host,
      ...(r.error ? { error: r.error.message, code: r.error.code } : {}),
      drill: r.command === 'drill',
      storages: r.storages.map((s) => s.name),
      ...(r.storages[0]?.stamp ? { stamp: r.storages[0].stamp } : {}),
    }))
    .sort((a, b) => a.t - b.t);
}

export function historySection(input: HistoryInput, now: number): SectionHistory {
  const storages: StorageHistory[] = input.views.map((view) => ({ storage: view.storage, points: storagePoints(view, input.live?.get(view.storage)), gaps: [] }));
  // The habit is the main storage's regular backups (all storages are backed up together).
  const main = storages.find((s) => s.storage === 'main') ?? storages[0];
  const regular = (s: StorageHistory) => s.points.filter((p) => p.kind === 'backup').map((p) => p.t);
  const expected = expectedInterval(main ? regular(main) : [], input.scheduleSeconds);
  for (const s of storages) s.gaps = findGaps(s.storage, regular(s), expected.limit, now);
  return { root: input.root, name: input.name, storages, runs: historyRuns(input.runs), expected };
}

/** The history of every deployment, on one time axis from the oldest generation or run to now. */
export function historyData(inputs: readonly HistoryInput[], now: Date): HistoryData {
  const n = now.getTime();
  const sections = inputs.map((i) => historySection(i, n));
  const times = sections.flatMap((s) => [...s.storages.flatMap((x) => x.points.map((p) => p.t)), ...s.runs.map((r) => r.t)]);
  const first = times.length ? Math.min(...times) : n - 86_400_000;
  const last = Math.max(n, ...times);
  // A little room before the first point, so it is not on the axis's edge.
  const pad = Math.max((last - first) * 0.03, 60_000);
  return { now: n, from: first - pad, to: last, sections };
}

/** How many points the history draws (for tests and the command's result). */
export function pointCount(d: HistoryData): number {
  return d.sections.reduce((n, s) => n + s.storages.reduce((k, x) => k + x.points.length, 0), 0);
}

/** The interval of the regular backups of the first schedule we wrote (systemd or cron), in seconds. */
export function scheduleSeconds(schedules: readonly InstalledSchedule[] | undefined): number | undefined {
  const every = schedules?.find((x) => x.spec)?.spec?.every;
  return every === '15m' ? 900 : every === '1h' ? 3600 : every === 'daily' ? 86_400 : undefined;
}

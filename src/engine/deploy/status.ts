/**
 * How a deployment's backups are doing, for monitoring (`plone-backup
 * status`): from the run log (runlog.ts) and the backup folders, read only.
 *
 * The levels are a Nagios/Icinga plugin's: 0 OK, 1 WARNING, 2 CRITICAL,
 * 3 UNKNOWN (the last is the shell's, for a status that could not be made).
 *
 * - Per storage, the time of its last backup: the newer of the last
 *   successful `backup` / `fullbackup` run that names it (a run that found no
 *   new transactions counts: the backup is current) and the newest regular
 *   backup in its folder (so backups made before there was a run log, by the
 *   recipe's bin/backup, count too). Older than `warnAge`: WARNING; older
 *   than `critAge`, or none at all: CRITICAL (a site that was never backed
 *   up is what monitoring is for; UNKNOWN is often not alerted on).
 * - Per command, whether its last run failed (no success since): a backup
 *   command, verify or drill: CRITICAL; a restore or check: WARNING (a live
 *   site's own problem, or a restore someone ran by hand). A later success of
 *   the same command clears it.
 * - A run log that is there but cannot be read (a link, not a regular file,
 *   too large): WARNING, since failures would go unseen; garbled lines are
 *   skipped and counted. No run log at all is no problem by itself: the
 *   folders still tell the age.
 */

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { PloneBackupError } from '../base/errors';
import { writeFileAtomic } from '../base/io';
import { listRepository } from '../repozo/repository';
import { parseStamp } from '../zodb/tid';
import { listGenerations } from './blobgen';
import type { Deployment } from './deployment';
import { BACKUP_COMMANDS, RUN_COMMANDS, readRuns, runLogPath, type RunCommand, type RunRecord } from './runlog';

export type StatusLevel = 0 | 1 | 2 | 3;
export const STATUS_LABELS = ['OK', 'WARNING', 'CRITICAL', 'UNKNOWN'] as const;
export const DEFAULT_WARN_AGE = 26 * 3600;
export const DEFAULT_CRIT_AGE = 50 * 3600;

export interface StatusOptions {
  now?: Date;
  /** Seconds. */
  warnAge?: number;
  critAge?: number;
}

export interface CommandStatus {
  command: RunCommand;
  lastSuccess?: RunRecord;
  lastFailure?: RunRecord;
  /** The last run failed and none succeeded since. */
  failing: boolean;
}

export interface StorageStatus {
  name: string;
  /** ISO time of the last backup (see the header), and where it was learned. */
  lastBackup?: string;
  lastBackupFrom?: 'run log' | 'backups';
  ageSeconds?: number;
  /** The newest regular backup in the folder. */
  newestStamp?: string;
  /** Regular backups in the folder (filestorage pieces; blob generations for only_blobs) and their bytes on disk. */
  generations: number;
  fullBackups: number;
  bytes: number;
  /** The last successful backup run of this storage. */
  lastRun?: { end: string; seconds: number; stamp?: string; action?: string; bytes?: number };
  lastDrill?: { end: string; ok: boolean; stamp?: string };
}

export interface DeploymentStatus {
  level: StatusLevel;
  label: (typeof STATUS_LABELS)[number];
  /** The plugin's line: `OK - last backup 3h ago | age=…`. */
  line: string;
  text: string;
  perfdata: string;
  reasons: string[];
  root: string;
  now: string;
  thresholds: { warnAge: number; critAge: number };
  runLog: { file: string; found: boolean; runs: number; skippedLines: number; problems: string[] };
  commands: CommandStatus[];
  storages: StorageStatus[];
}

/** "26h", "90m", "2d", "1h30m", "45s" or plain seconds, as seconds; undefined when it is none of these. */
export function parseDuration(s: string): number | undefined {
  const t = s.trim();
  if (/^\d+(\.\d+)?$/.test(t)) return Number(t);
  if (!/^(\d+(\.\d+)?[smhdw])+$/.test(t)) return undefined;
  const unit: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };
  let total = 0;
  for (const m of t.matchAll(/(\d+(?:\.\d+)?)([smhdw])/g)) total += Number(m[1]) * unit[m[2]!]!;
  return total;
}

/** A short age: "45s", "12m", "3h", "2d 4h". */
export function shortAge(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 48 * 3600) return `${Math.floor(s / 3600)}h${s < 10 * 3600 && s % 3600 >= 60 ? ` ${Math.floor((s % 3600) / 60)}m` : ''}`;
  return `${Math.floor(s / 86400)}d${s % 86400 >= 3600 ? ` ${Math.floor((s % 86400) / 3600)}h` : ''}`;
}

const CRITICAL_WHEN_FAILING = new Set<RunCommand>([...BACKUP_COMMANDS, 'verify', 'drill', 'push']);

/** One line, not too long, for the plugin's output. */
function oneLine(s: string, max = 300): string {
  const t = s.replace(/\s+/g, ' ').trim();
  return t.length > max ? `${t.slice(0, max - 1)}…` : t;
}

/** The deployment's status: see the header. Reads only; never throws for what it finds, only for what it cannot read at all. */
export async function deploymentStatus(dep: Deployment, o: StatusOptions = {}): Promise<DeploymentStatus> {
  const now = o.now ?? new Date();
  const warnAge = o.warnAge ?? DEFAULT_WARN_AGE;
  const critAge = o.critAge ?? DEFAULT_CRIT_AGE;
  if (!(warnAge <= critAge))
    throw new PloneBackupError('USAGE', `The warning age (${warnAge} s) must not be above the critical age (${critAge} s).`, { hint: 'Pass --warn-age below --crit-age.' });
  const file = runLogPath(dep);
  const read = await readRuns(file);
  const records = [...read.records].sort((a, b) => a.end.localeCompare(b.end));
  const problems: { level: StatusLevel; text: string }[] = [];
  const ago = (iso: string) => shortAge((now.getTime() - Date.parse(iso)) / 1000);

  // Per command: its last success and failure.
  const commands: CommandStatus[] = [];
  for (const command of RUN_COMMANDS) {
    const mine = records.filter((r) => r.command === command);
    if (!mine.length) continue;
    const lastSuccess = mine.filter((r) => r.outcome === 'ok').at(-1);
    const lastFailure = mine.filter((r) => r.outcome === 'failed').at(-1);
    const failing = !!lastFailure && (!lastSuccess || lastFailure.end > lastSuccess.end);
    commands.push({ command, lastSuccess, lastFailure, failing });
    if (failing) {
      problems.push({
        level: CRITICAL_WHEN_FAILING.has(command) ? 2 : 1,
        text: oneLine(
          `${command}${lastFailure.remote ? ` ${command === 'push' ? 'to' : 'on'} ${lastFailure.remote}` : ''} failed ${ago(lastFailure.end)} ago: ${lastFailure.error?.message ?? 'no reason recorded'}`,
        ),
      });
    }
  }
  if (read.problems.length) problems.push({ level: 1, text: oneLine(`the run log cannot be read: ${read.problems[0]}`) });

  // Per storage: the last backup, what the folder holds, the last drill.
  const storages: StorageStatus[] = [];
  for (const s of dep.storages) {
    const st: StorageStatus = { name: s.name, generations: 0, fullBackups: 0, bytes: 0 };
    if (dep.settings.onlyBlobs && s.blobDir) {
      const gens = (await listGenerations(s.dirs.blobBackups, path.basename(s.blobDir)).catch(() => [])).filter((g) => g.stamp);
      st.generations = gens.length;
      st.newestStamp = gens.at(-1)?.stamp;
    } else {
      const repo = await listRepository(s.dirs.backups).catch((e: unknown) => {
        if (PloneBackupError.is(e, 'REPO_MISSING')) return undefined;
        throw e;
      });
      for (const f of repo?.files ?? []) {
        st.generations++;
        if (f.full) st.fullBackups++;
        st.bytes += await fsp.lstat(path.join(s.dirs.backups, f.name)).then(
          (x) => (x.isFile() ? x.size : 0),
          () => 0,
        );
      }
      st.newestStamp = repo?.files.at(-1)?.stamp;
    }
    const runs = records.filter((r) => r.outcome === 'ok' && (r.command === 'backup' || r.command === 'fullbackup') && r.storages.some((x) => x.name === s.name));
    const last = runs.at(-1);
    if (last) {
      const x = last.storages.find((y) => y.name === s.name)!;
      st.lastRun = { end: last.end, seconds: last.seconds, stamp: x.stamp, action: x.action, bytes: x.bytes };
    }
    const listed = st.newestStamp ? parseStamp(st.newestStamp).toISOString() : undefined;
    if (last && (!listed || last.end >= listed)) [st.lastBackup, st.lastBackupFrom] = [last.end, 'run log'];
    else if (listed) [st.lastBackup, st.lastBackupFrom] = [listed, 'backups'];
    if (st.lastBackup) st.ageSeconds = Math.max(0, Math.round((now.getTime() - Date.parse(st.lastBackup)) / 1000));
    const drill = records.filter((r) => r.command === 'drill' && r.storages.some((x) => x.name === s.name)).at(-1);
    if (drill)
      st.lastDrill = {
        end: drill.end,
        ok: drill.storages.find((x) => x.name === s.name)!.ok === true && drill.outcome === 'ok',
        stamp: drill.storages.find((x) => x.name === s.name)!.stamp,
      };
    storages.push(st);

    const who = dep.storages.length > 1 ? `${s.name}: ` : '';
    if (st.ageSeconds === undefined) problems.push({ level: 2, text: `${who}no backup found in ${s.dirs.backups}` });
    else if (st.ageSeconds > critAge) problems.push({ level: 2, text: `${who}last backup ${shortAge(st.ageSeconds)} ago, older than ${shortAge(critAge)}` });
    else if (st.ageSeconds > warnAge) problems.push({ level: 1, text: `${who}last backup ${shortAge(st.ageSeconds)} ago, older than ${shortAge(warnAge)}` });
  }

  const level = problems.reduce<StatusLevel>((l, p) => (p.level > l ? p.level : l), 0);
  problems.sort((a, b) => b.level - a.level);
  const ages = storages.map(
    (st) =>
      `${dep.storages.length > 1 ? `${st.name} ` : ''}${st.ageSeconds === undefined ? 'never backed up' : `last backup ${shortAge(st.ageSeconds)} ago`} (${st.generations} backup${st.generations === 1 ? '' : 's'})`,
  );
  const reasons = problems.map((p) => p.text);
  // The ages are said once: a reason about them replaces the summary.
  const text = [...reasons, ...(reasons.some((r) => /last backup|no backup found/.test(r)) ? [] : ages)].join('; ');
  const perfdata = perfdataOf(storages, dep, warnAge, critAge);
  const label = STATUS_LABELS[level];
  return {
    level,
    label,
    line: `${label} - ${text}${perfdata ? ` | ${perfdata}` : ''}`,
    text,
    perfdata,
    reasons,
    root: dep.root,
    now: now.toISOString(),
    thresholds: { warnAge, critAge },
    runLog: { file, found: read.found, runs: read.records.length, skippedLines: read.skipped, problems: read.problems },
    commands,
    storages,
  };
}

/**
 * Nagios perfdata: for the main storage `age=10800s;WARN;CRIT size=…B
 * generations=N` and, once a run was recorded, `last_size=…B duration=…s`;
 * other storages' labels carry their name (`catalog_age=…`). An age not
 * known is `U`.
 */
function perfdataOf(storages: StorageStatus[], dep: Deployment, warn: number, crit: number): string {
  const out: string[] = [];
  for (const st of storages) {
    const p = st.name === 'main' || dep.storages.length === 1 ? '' : `${st.name}_`;
    out.push(`${p}age=${st.ageSeconds === undefined ? 'U' : `${st.ageSeconds}s`};${warn};${crit}`);
    out.push(`${p}size=${st.bytes}B`);
    out.push(`${p}generations=${st.generations}`);
    if (st.lastRun?.bytes !== undefined) out.push(`${p}last_size=${st.lastRun.bytes}B`);
    if (st.lastRun) out.push(`${p}duration=${st.lastRun.seconds}s`);
  }
  return out.join(' ');
}

// ---------------------------------------------------------------------------
// Prometheus (node_exporter's textfile collector)

function labels(l: Record<string, string>): string {
  const esc = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
  return `{${Object.entries(l)
    .map(([k, v]) => `${k}="${esc(v)}"`)
    .join(',')}}`;
}

const secs = (iso: string) => Date.parse(iso) / 1000;

/** The status as node_exporter textfile metrics (the exposition format, one HELP and TYPE per metric). */
export function prometheusText(s: DeploymentStatus): string {
  const d = { deployment: s.root };
  const metrics: { name: string; help: string; samples: [Record<string, string>, number][] }[] = [
    { name: 'plone_backup_status', help: 'The status check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.', samples: [[d, s.level]] },
    { name: 'plone_backup_status_timestamp_seconds', help: 'When the status was taken.', samples: [[d, secs(s.now)]] },
    {
      name: 'plone_backup_last_success_timestamp_seconds',
      help: 'When the last successful run of the command ended.',
      samples: s.commands.filter((c) => c.lastSuccess).map((c) => [{ ...d, command: c.command }, secs(c.lastSuccess!.end)]),
    },
    {
      name: 'plone_backup_last_failure_timestamp_seconds',
      help: 'When the last failed run of the command ended.',
      samples: s.commands.filter((c) => c.lastFailure).map((c) => [{ ...d, command: c.command }, secs(c.lastFailure!.end)]),
    },
    {
      name: 'plone_backup_last_duration_seconds',
      help: 'How long the last successful run of the command took.',
      samples: s.commands.filter((c) => c.lastSuccess).map((c) => [{ ...d, command: c.command }, c.lastSuccess!.seconds]),
    },
    {
      name: 'plone_backup_failing',
      help: '1 when the last run of the command failed and none succeeded since.',
      samples: s.commands.map((c) => [{ ...d, command: c.command }, c.failing ? 1 : 0]),
    },
    {
      name: 'plone_backup_last_backup_timestamp_seconds',
      help: 'When the storage was last backed up (a successful backup run, or the newest backup in its folder).',
      samples: s.storages.filter((x) => x.lastBackup).map((x) => [{ ...d, storage: x.name }, secs(x.lastBackup!)]),
    },
    {
      name: 'plone_backup_last_backup_size_bytes',
      help: 'Bytes the last successful backup run wrote for the storage (its filestorage piece as stored).',
      samples: s.storages.filter((x) => x.lastRun?.bytes !== undefined).map((x) => [{ ...d, storage: x.name }, x.lastRun!.bytes!]),
    },
    {
      name: 'plone_backup_size_bytes',
      help: 'Bytes of the regular backups of the storage on disk (filestorage pieces).',
      samples: s.storages.map((x) => [{ ...d, storage: x.name }, x.bytes]),
    },
    { name: 'plone_backup_generations', help: 'Regular backups of the storage in its folder.', samples: s.storages.map((x) => [{ ...d, storage: x.name }, x.generations]) },
    { name: 'plone_backup_full_backups', help: 'Full backups of the storage in its folder.', samples: s.storages.map((x) => [{ ...d, storage: x.name }, x.fullBackups]) },
    {
      name: 'plone_backup_last_drill_success',
      help: '1 when the last restore drill of the storage passed, 0 when it failed.',
      samples: s.storages.filter((x) => x.lastDrill).map((x) => [{ ...d, storage: x.name }, x.lastDrill!.ok ? 1 : 0]),
    },
    {
      name: 'plone_backup_last_drill_timestamp_seconds',
      help: 'When the last restore drill of the storage ended.',
      samples: s.storages.filter((x) => x.lastDrill).map((x) => [{ ...d, storage: x.name }, secs(x.lastDrill!.end)]),
    },
    { name: 'plone_backup_run_log_skipped_lines', help: 'Lines of the run log that were not records and were skipped.', samples: [[d, s.runLog.skippedLines]] },
  ];
  let out = '';
  for (const m of metrics) {
    if (!m.samples.length) continue;
    out += `# HELP ${m.name} ${m.help}\n# TYPE ${m.name} gauge\n`;
    for (const [l, v] of m.samples) out += `${m.name}${labels(l)} ${Number.isInteger(v) ? v : v.toFixed(3)}\n`;
  }
  return out;
}

/**
 * Writes the metrics to `file` atomically (a temp file beside it, renamed
 * over it), so the collector never reads half a file; readable by others
 * (0644): node_exporter runs as its own user, and the file holds times and
 * sizes only.
 */
export async function writeStatusMetrics(file: string, s: DeploymentStatus): Promise<void> {
  await writeFileAtomic(file, prometheusText(s), 0o644);
}

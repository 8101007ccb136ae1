/**
 * The run log as the extension shows it: the status bar's last run and
 * failures, the Backups view's "Last runs" group, the history's failed runs
 * and drills. No vscode import: the reading is the engine's (readRuns, and
 * deploymentStatus for which commands are failing, exactly as `plone-backup
 * status` decides it), the wording here is plain functions, tested with node's
 * test runner (test/extension/unit).
 */

import { deploymentStatus, humanBytes, plural, readRuns, runLogPath, shortAge, type CommandStatus, type Deployment, type RunRecord } from '../engine';

/** Rotated run logs read besides the current one (the history reaches further back than status does). */
export const ROTATED_READ = 3;
/** Runs the "Last runs" group shows. */
export const LAST_RUNS = 5;

export interface RunsInfo {
  file: string;
  /** Oldest first (by end). */
  records: RunRecord[];
  /** Commands whose last run failed and none succeeded since (deploymentStatus). */
  failing: CommandStatus[];
  /** Why the run log could not be read (a link, too large): failures could go unseen. */
  problems: string[];
}

/** Reads the deployment's run log; never throws (a problem is in `problems`). */
export async function loadRuns(dep: Deployment, now = new Date()): Promise<RunsInfo> {
  const file = runLogPath(dep);
  const info: RunsInfo = { file, records: [], failing: [], problems: [] };
  try {
    const read = await readRuns(file, { rotated: ROTATED_READ });
    info.records = [...read.records].sort((a, b) => a.end.localeCompare(b.end));
    info.problems.push(...read.problems);
  } catch (e) {
    info.problems.push((e as Error).message);
  }
  try {
    // Only its per-command verdict: the ages are the view's own (ploneBackup.statusBar.warnAfterHours).
    info.failing = (await deploymentStatus(dep, { now })).commands.filter((c) => c.failing);
  } catch (e) {
    info.problems.push((e as Error).message);
  }
  return info;
}

/** The newest `n` runs, newest first. */
export function newestRuns(info: RunsInfo | undefined, n = LAST_RUNS): RunRecord[] {
  return [...(info?.records ?? [])].reverse().slice(0, n);
}

/** Who ran it: "cli on web1", "extension on laptop". */
export function runBy(r: RunRecord): string {
  return `${r.via ?? 'cli'} on ${r.host}`;
}

/** "backup ok", "drill failed". */
export function runTitle(r: RunRecord): string {
  return `${r.command} ${r.outcome === 'ok' ? 'ok' : 'failed'}`;
}

/** How long ago it ended: "5m ago". */
export function runAgo(r: RunRecord, now: Date): string {
  return `${shortAge((now.getTime() - Date.parse(r.end)) / 1000)} ago`;
}

/** What it did, in a few words: "incremental, 12 transactions, 180.1 KB" (per storage when several). */
export function runSizes(r: RunRecord): string {
  const one = (s: RunRecord['storages'][number]) =>
    [
      s.action,
      s.transactions !== undefined ? plural(s.transactions, 'transaction') : undefined,
      s.bytes !== undefined ? humanBytes(s.bytes) : undefined,
      s.errors ? plural(s.errors, 'error') : undefined,
      s.warnings ? plural(s.warnings, 'warning') : undefined,
    ]
      .filter(Boolean)
      .join(', ');
  const parts = r.storages.map((s) => ({ name: s.name, text: one(s) })).filter((p) => p.text);
  if (parts.length === 1 && r.storages.length === 1) return parts[0]!.text;
  return parts.map((p) => `${p.name}: ${p.text}`).join('; ');
}

/** The command line that ran (or would run it again). */
export function runCommandLine(r: RunRecord): string {
  return r.command === 'undorestore' ? 'Undo Last Restore (the extension)' : `plone-backup ${r.command}`;
}

/** One line for a run: "backup failed · cli on web1 · 5m ago · …". */
export function runLine(r: RunRecord, now: Date): string {
  const sizes = runSizes(r);
  return [runTitle(r), runBy(r), runAgo(r, now), ...(sizes ? [sizes] : [])].join(' · ');
}

export interface Located<T> {
  /** The deployment's name (its workspace folder). */
  name: string;
  value: T;
}

/** What the status bar says about the runs of every deployment. */
export interface RunsSummary {
  /** The newest run of any deployment. */
  last?: Located<RunRecord>;
  /** Failing commands (their last failure), newest first. */
  failing: Located<RunRecord>[];
  problems: Located<string>[];
}

export function summarizeRuns(list: { name: string; runs?: RunsInfo }[]): RunsSummary {
  const out: RunsSummary = { failing: [], problems: [] };
  for (const { name, runs } of list) {
    if (!runs) continue;
    const last = runs.records.at(-1);
    if (last && (!out.last || last.end > out.last.value.end)) out.last = { name, value: last };
    for (const c of runs.failing) if (c.lastFailure) out.failing.push({ name, value: c.lastFailure });
    for (const p of runs.problems) out.problems.push({ name, value: p });
  }
  out.failing.sort((a, b) => b.value.end.localeCompare(a.value.end));
  return out;
}

/**
 * The status bar's text beside the newest backup's age: nothing when the last
 * run is the backup that wrote the newest generation (the age says it), else
 * "verify ok 5m ago".
 */
export function lastRunSuffix(last: RunRecord | undefined, newestStamp: string | undefined, now: Date): string {
  if (!last) return '';
  const wroteNewest = ['backup', 'fullbackup'].includes(last.command) && last.outcome === 'ok' && !!newestStamp && last.storages.some((s) => s.stamp === newestStamp);
  return wroteNewest ? '' : `${runTitle(last)} ${runAgo(last, now)}`;
}

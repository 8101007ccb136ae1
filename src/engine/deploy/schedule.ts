/**
 * `plone-backup schedule`: backups run by the machine's own scheduler, as the
 * same CLI with `-q` in the deployment's folder. Where systemd runs, a timer
 * and a oneshot service per job (system units in /etc/systemd/system, or the
 * user's in ~/.config/systemd/user); elsewhere, lines in the crontab, edited
 * through `crontab -l` / `crontab -` so that every other line stays as it was.
 *
 * The jobs: `backup -q` every 15 minutes, hourly or daily at 03:00;
 * `fullbackup -q` at 03:00 on the --full weekday, which then takes the place
 * of that slot's backup (the two never start together and wait for each
 * other's lock); `drill -q` weekly at 04:40 (a minute no backup uses) on the
 * day before the full backup's (so it restores the longest chain: the full
 * and every incremental since), or on Sundays. All times are the machine's
 * local time, as cron and systemd read them.
 *
 * What is ours, and nothing else, is found again by a marker naming the
 * deployment's id (a slug of its folder and 8 hex digits of the folder's
 * sha256): the unit files are named plone-backup-<id>-<job>.{service,timer}
 * and carry `# plone-backup-schedule:<id> {json}`; in the crontab a header
 * comment of the same form, and every job line ends with
 * ` # plone-backup-schedule:<id>:<job>`. Another deployment's lines (another
 * id) and the user's are never touched. Installing again replaces ours
 * (in place in the crontab), and removes our jobs the new plan no longer has,
 * also from the other targets (a schedule moved from cron to systemd does not
 * run twice).
 *
 * What is read back (unit files, the crontab) may have been edited by hand or
 * by someone else, and is treated as hostile: unit files are read capped,
 * never through a link; the crontab's output is capped; lines are split once
 * and looked at with string operations (linear); nothing read is ever run.
 * The only commands run are systemctl and crontab, with arguments we make.
 *
 * Unit files are written atomically (a temp file beside, fsynced, renamed;
 * io.ts's writeFileAtomic through fileLayer). With a systemd that runs, then
 * `systemctl daemon-reload` and `systemctl enable --now` of the timers; where
 * it does not run (an image being built, a container, a test's temporary
 * root), the timers are enabled as `systemctl enable` does offline: a link in
 * timers.target.wants, and start when systemd does.
 *
 * Everything outside is injectable (ScheduleEnv: the unit folders, the
 * systemctl and crontab commands, whether systemd runs), so tests write the
 * real files into a temporary root and run the real crontab against a user
 * of their own; PLONE_BACKUP_SCHEDULE_ENV (JSON, for tests only) sets them
 * for the CLI and the extension's test host.
 */

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PloneBackupError, checkAbort, toPloneBackupError } from '../base/errors';
import { fileLayer, fsyncDir, readFileCapped, writeFileAtomic } from '../base/io';
import { expandPath, type DiscoverOverrides } from './deployment';

export const SCHEDULE_EVERY = ['15m', '1h', 'daily'] as const;
export type ScheduleEvery = (typeof SCHEDULE_EVERY)[number];
/** cron's numbering: 0 is Sunday. */
export const WEEKDAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const;
export type Weekday = (typeof WEEKDAYS)[number];
export const SCHEDULE_JOBS = ['backup', 'fullbackup', 'drill'] as const;
export type ScheduleJob = (typeof SCHEDULE_JOBS)[number];
export const SCHEDULE_TARGETS = ['systemd', 'systemd-user', 'cron'] as const;
export type ScheduleTarget = (typeof SCHEDULE_TARGETS)[number];

/** What to run when. */
export interface ScheduleSpec {
  every: ScheduleEvery;
  /** The weekday of the weekly full backup (none: `backup` decides, as always). */
  full?: Weekday;
  /** A weekly restore drill. */
  drill?: boolean;
}

/** The hour of the daily backup and of the full backup; the drill's time, a minute no backup uses. */
export const BACKUP_HOUR = 3;
export const DRILL_HOUR = 4;
export const DRILL_MINUTE = 40;

/** The comment that marks what is ours (followed by `:<id>`). */
export const SCHEDULE_MARK = '# plone-backup-schedule';

const SYSTEMD_DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const DAY_NAMES = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
const EVERY_WORDS: Record<ScheduleEvery, string> = { '15m': 'every 15 min', '1h': 'hourly', daily: 'daily at 03:00' };

/** A crontab line or a unit file longer than this is not ours; a crontab or unit file bigger than these is refused. */
const MAX_LINE = 8 * 1024;
const MAX_CRONTAB = 1 << 20;
const MAX_UNIT = 64 * 1024;
/** How long systemctl and crontab may take. */
const TOOL_TIMEOUT_MS = 60_000;

// ---------------------------------------------------------------------------
// Parsing what a person types

/** `15m`, `1h`, `daily` (and `15min`, `hourly`, `1d`); undefined for anything else. */
export function parseEvery(s: string): ScheduleEvery | undefined {
  const v = s.trim().toLowerCase();
  if (v === '15m' || v === '15min') return '15m';
  if (v === '1h' || v === 'hourly' || v === '60m') return '1h';
  if (v === 'daily' || v === '1d' || v === '24h') return 'daily';
  return undefined;
}

/** A weekday by name (`sun`, `Sunday`), or 0–7 as cron counts (0 and 7 are Sunday); undefined for anything else. */
export function parseWeekday(s: string): Weekday | undefined {
  const v = s.trim().toLowerCase();
  if (/^[0-7]$/.test(v)) return WEEKDAYS[Number(v) % 7];
  const i = DAY_NAMES.findIndex((d) => d.toLowerCase() === v || d.toLowerCase().slice(0, 3) === v);
  return i < 0 ? undefined : WEEKDAYS[i];
}

// ---------------------------------------------------------------------------
// When: slots, as cron fields and systemd calendar events

/** A set of minutes of the week: every combination of these days (0 = Sunday), hours and minutes. */
export interface Slot {
  days: number[];
  hours: number[];
  minutes: number[];
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const without = (xs: number[], x: number) => xs.filter((y) => y !== x);

function baseSlot(every: ScheduleEvery): Slot {
  if (every === '15m') return { days: range(7), hours: range(24), minutes: [0, 15, 30, 45] };
  if (every === '1h') return { days: range(7), hours: range(24), minutes: [0] };
  return { days: range(7), hours: [BACKUP_HOUR], minutes: [0] };
}

/** The slot minus one minute of the week that it holds, as at most three slots. */
function subtract(s: Slot, day: number, hour: number, minute: number): Slot[] {
  const out: Slot[] = [];
  if (without(s.days, day).length) out.push({ ...s, days: without(s.days, day) });
  if (without(s.hours, hour).length) out.push({ days: [day], hours: without(s.hours, hour), minutes: s.minutes });
  if (without(s.minutes, minute).length) out.push({ days: [day], hours: [hour], minutes: without(s.minutes, minute) });
  return out;
}

/** The jobs of a spec and when each runs. */
export function scheduleSlots(spec: ScheduleSpec): { job: ScheduleJob; slots: Slot[] }[] {
  const base = baseSlot(spec.every);
  const out: { job: ScheduleJob; slots: Slot[] }[] = [];
  if (spec.full === undefined) out.push({ job: 'backup', slots: [base] });
  else {
    const day = WEEKDAYS.indexOf(spec.full);
    out.push({ job: 'backup', slots: subtract(base, day, BACKUP_HOUR, 0) });
    out.push({ job: 'fullbackup', slots: [{ days: [day], hours: [BACKUP_HOUR], minutes: [0] }] });
  }
  if (spec.drill) {
    const day = spec.full === undefined ? 0 : (WEEKDAYS.indexOf(spec.full) + 6) % 7;
    out.push({ job: 'drill', slots: [{ days: [day], hours: [DRILL_HOUR], minutes: [DRILL_MINUTE] }] });
  }
  return out;
}

/** Runs of consecutive numbers: [[0,2],[4,6]]. */
function runs(xs: number[]): [number, number][] {
  const out: [number, number][] = [];
  for (const x of xs) {
    const last = out.at(-1);
    if (last && x === last[1] + 1) last[1] = x;
    else out.push([x, x]);
  }
  return out;
}

function listField(xs: number[], all: number, fmt: (n: number) => string, dash: string): string {
  if (xs.length === all) return '*';
  return runs(xs)
    .map(([a, b]) => (a === b ? fmt(a) : b === a + 1 ? `${fmt(a)},${fmt(b)}` : `${fmt(a)}${dash}${fmt(b)}`))
    .join(',');
}

/** The five time fields of a crontab line: `m h dom mon dow`. */
export function cronFields(s: Slot): string {
  const n = String;
  return `${listField(s.minutes, 60, n, '-')} ${listField(s.hours, 24, n, '-')} * * ${listField(s.days, 7, n, '-')}`;
}

/** A systemd calendar event (systemd.time(7)): `Mon..Sat *-*-* 03:00:00`. */
export function calendarEvent(s: Slot): string {
  const two = (x: number) => String(x).padStart(2, '0');
  // systemd's week starts on Monday, and its ranges do not wrap (Sun..Tue is refused): counted from Monday.
  const fromMonday = s.days.map((d) => (d + 6) % 7).sort((a, b) => a - b);
  const days = s.days.length === 7 ? '' : `${listField(fromMonday, 7, (d) => SYSTEMD_DAYS[(d + 1) % 7]!, '..')} `;
  return `${days}*-*-* ${listField(s.hours, 24, two, '..')}:${listField(s.minutes, 60, two, '..')}:00`;
}

/** In words: "every 15 min, a full backup on Sundays at 03:00, a restore drill on Saturdays at 04:40". */
export function describeSpec(spec: ScheduleSpec): string {
  const parts: string[] = [EVERY_WORDS[spec.every]];
  for (const { job, slots } of scheduleSlots(spec)) {
    if (job === 'backup') continue;
    const s = slots[0]!;
    const at = `${DAY_NAMES[s.days[0]!]}s at ${String(s.hours[0]).padStart(2, '0')}:${String(s.minutes[0]).padStart(2, '0')}`;
    parts.push(job === 'fullbackup' ? `a full backup on ${at}` : `a restore drill on ${at}`);
  }
  return parts.join(', ');
}

export const TARGET_WORDS: Record<ScheduleTarget, string> = { systemd: 'systemd timer', 'systemd-user': 'systemd user timer', cron: 'crontab' };

// ---------------------------------------------------------------------------
// What: the commands, and how they are written into a unit file or a crontab line

export interface ScheduleInput {
  /** The deployment's folder (made absolute and resolved). */
  root: string;
  /** How plone-backup runs: [node, its cli.js], or [the standalone executable]; absolute paths. */
  invocation: readonly string[];
  /** Where the deployment is and how it is backed up, when not found in its folder alone: carried as the same flags. */
  overrides?: DiscoverOverrides;
  /** What relative paths in `overrides` are relative to (default: root), as discovery read them. */
  base?: string;
}

/** The flags that make a scheduled run find the same deployment (paths made absolute, `~` and `$VAR` expanded now). */
export function overrideFlags(root: string, o: DiscoverOverrides = {}): string[] {
  const abs = (p: string) => path.resolve(root, expandPath(p, o.env ?? process.env));
  const out: string[] = [];
  if (o.config !== undefined) out.push('--config', abs(o.config));
  if (o.file !== undefined) out.push('--file', abs(o.file));
  if (o.blobDir !== undefined) out.push('--blob-dir', abs(o.blobDir));
  if (o.backupRoot !== undefined) out.push('--backup-dir', abs(o.backupRoot));
  if (o.part !== undefined) out.push('--part', o.part);
  if (o.keep !== undefined) out.push('--keep', String(o.keep));
  if (o.gzip !== undefined) out.push(o.gzip ? '--gzip' : '--no-gzip');
  if (o.compressLevel !== undefined) out.push('--compress-level', String(o.compressLevel));
  if (o.quick !== undefined) out.push(o.quick ? '--quick' : '--no-quick');
  if (o.onFailure !== undefined) out.push('--on-failure', o.onFailure);
  return out;
}

/** The id of a deployment's schedule: a slug of its folder's name and 8 hex digits of the folder's sha256. */
export function scheduleId(root: string): string {
  const slug =
    path
      .basename(root)
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, 24)
      .replace(/-+$/, '') || 'site';
  return `${slug}-${createHash('sha256').update(root).digest('hex').slice(0, 8)}`;
}

export function unitBase(id: string, job: ScheduleJob): string {
  return `plone-backup-${id}-${job}`;
}

/**
 * Everything that goes into a unit file or a crontab line must say what it
 * means there: no control characters (a newline would start a line of its
 * own) and no backslash (an escape to systemd, to cron before a %, and a line
 * continuation at the end of a unit file's line).
 */
function checkWord(s: string, what: string): void {
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f\\]/.test(s) || s.length > 4096) {
    throw new PloneBackupError(
      'USAGE',
      `${what} ${JSON.stringify(s.slice(0, 200))} holds a backslash, a control character or is too long, so it cannot be written into a crontab line or a systemd unit safely.`,
      {
        hint: 'Rename or move it (or put the option into plone-backup.json), then schedule again.',
      },
    );
  }
}

/**
 * A word of ExecStart=: double-quoted, `%%` for `%` (specifiers); in the
 * arguments also `\"` for a quote and `$$` for `$` (systemd expands $VAR
 * there). The program's own path is taken literally but for specifiers, and
 * systemd refuses one with a quote in it (checked by planSchedule).
 */
export function systemdWord(s: string, program = false): string {
  return `"${s.replace(program ? /%/g : /["$%]/g, (c) => (c === '"' ? '\\"' : c + c))}"`;
}

/** A value of a unit file's line where specifiers apply (WorkingDirectory=, Description=). */
function systemdValue(s: string): string {
  return s.replace(/%/g, '%%');
}

/** Single-quoted for /bin/sh. */
function shWord(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The command of a crontab line: cron turns an unescaped % into a newline, so each is written \%. */
export function cronCommand(root: string, argv: readonly string[]): string {
  return `cd ${shWord(root)} && exec ${argv.map(shWord).join(' ')}`.replace(/%/g, '\\%');
}

export interface PlannedJob {
  job: ScheduleJob;
  slots: Slot[];
  /** The command run: the CLI, the job, -q, the flags. */
  argv: string[];
  /** systemd: the OnCalendar= values; cron: the time fields of each line. */
  when: string[];
}

export interface SchedulePlan {
  id: string;
  root: string;
  target: ScheduleTarget;
  spec: ScheduleSpec;
  jobs: PlannedJob[];
  /** systemd: the unit files (name → text); cron: the lines (header first). */
  files: { name: string; text: string }[];
  cronLines: string[];
}

/** The marker's JSON: what was asked, read back by show (the truth is still the files). */
interface Marker {
  v: 1;
  root: string;
  every: ScheduleEvery;
  full?: Weekday;
  drill?: boolean;
}

function markerLine(id: string, root: string, spec: ScheduleSpec): string {
  const m: Marker = { v: 1, root, every: spec.every, ...(spec.full ? { full: spec.full } : {}), ...(spec.drill ? { drill: true } : {}) };
  return `${SCHEDULE_MARK}:${id} ${JSON.stringify(m)}`;
}

/** The unit files or crontab lines that schedule `spec` for the deployment at `input.root`. */
export function planSchedule(spec: ScheduleSpec, input: ScheduleInput, target: ScheduleTarget): SchedulePlan {
  const root = path.resolve(input.root);
  checkWord(root, 'The deployment folder');
  if (!input.invocation.length || !path.isAbsolute(input.invocation[0]!)) {
    throw new PloneBackupError('USAGE', 'The plone-backup command to schedule must be given by its absolute path.', { hint: 'Run plone-backup by its full path.' });
  }
  for (const w of input.invocation) checkWord(w, 'The path of plone-backup');
  if (target !== 'cron' && /["']/.test(input.invocation[0]!)) {
    throw new PloneBackupError('USAGE', `systemd cannot run a program whose path holds a quote: ${input.invocation[0]}.`, {
      hint: 'Move or link it to a plain path, or use --cron.',
    });
  }
  const flags = overrideFlags(path.resolve(input.base ?? root), input.overrides);
  for (const w of flags) checkWord(w, 'The option');
  const id = scheduleId(root);
  const mark = markerLine(id, root, spec);
  const jobs: PlannedJob[] = scheduleSlots(spec).map(({ job, slots }) => ({
    job,
    slots,
    // --scheduled: the run log says the run was the schedule's (cron or a timer), not a person's.
    argv: [...input.invocation, job, '-q', '--scheduled', ...flags],
    when: slots.map(target === 'cron' ? cronFields : calendarEvent),
  }));
  const files: SchedulePlan['files'] = [];
  const cronLines: string[] = [];
  if (target === 'cron') {
    cronLines.push(mark, `${SCHEDULE_MARK}:${id} written by plone-backup schedule install; plone-backup schedule remove removes these lines`);
    for (const j of jobs) for (const w of j.when) cronLines.push(`${w} ${cronCommand(root, j.argv)} ${SCHEDULE_MARK}:${id}:${j.job}`);
  } else {
    const head = [mark, `# Written by plone-backup schedule install; plone-backup schedule remove removes it.`];
    for (const j of jobs) {
      const base = unitBase(id, j.job);
      const what = `Plone Backup: ${j.job} of ${systemdValue(root)}`;
      files.push({
        name: `${base}.service`,
        text: [
          ...head,
          '[Unit]',
          `Description=${what}`,
          '',
          '[Service]',
          'Type=oneshot',
          `WorkingDirectory=${systemdValue(root)}`,
          `ExecStart=${j.argv.map((w, i) => systemdWord(w, i === 0)).join(' ')}`,
          'Nice=10',
          'IOSchedulingClass=best-effort',
          'IOSchedulingPriority=7',
          '',
        ].join('\n'),
      });
      files.push({
        name: `${base}.timer`,
        text: [
          ...head,
          '[Unit]',
          `Description=${what} (${j.job === 'backup' ? EVERY_WORDS[spec.every] : 'weekly'})`,
          '',
          '[Timer]',
          ...j.when.map((w) => `OnCalendar=${w}`),
          'Persistent=true',
          '',
          '[Install]',
          'WantedBy=timers.target',
          '',
        ].join('\n'),
      });
    }
  }
  return { id, root, target, spec, jobs, files, cronLines };
}

// ---------------------------------------------------------------------------
// Where: the environment (injectable), and running systemctl / crontab

export interface ScheduleEnv {
  /** System units (default /etc/systemd/system). */
  systemUnitDir: string;
  /** The user's units (default $XDG_CONFIG_HOME/systemd/user, or ~/.config/systemd/user). */
  userUnitDir: string;
  /** systemctl (default ['systemctl']); `--user` is added for the user's units. */
  systemctl: string[];
  /** crontab (default ['crontab']; a test: ['crontab', '-u', 'someone']). */
  crontab: string[];
  /** Whether systemd runs (default: /run/systemd/system is a folder): the default target, and whether units are reloaded and started or only enabled. */
  systemdRunning: boolean;
  /** Whether the user's own systemd runs (default: $XDG_RUNTIME_DIR/systemd, or /run/user/UID/systemd, is a folder). */
  userManagerRunning: boolean;
  /** Where `loginctl enable-linger` leaves its flag (default /var/lib/systemd/linger), and the user's name. */
  lingerDir: string;
  user: string;
}

/** The variable that sets ScheduleEnv's fields (JSON) for the CLI and the extension's test host: for tests only. */
export const SCHEDULE_ENV_VAR = 'PLONE_BACKUP_SCHEDULE_ENV';

const isDir = (p: string) =>
  fsp.stat(p).then(
    (s) => s.isDirectory(),
    () => false,
  );

/** The real environment, with `over` (a test's) in place of any field. */
export async function scheduleEnv(over: Partial<ScheduleEnv> = {}, env: NodeJS.ProcessEnv = process.env): Promise<ScheduleEnv> {
  const user = over.user ?? os.userInfo().username;
  const config = env.XDG_CONFIG_HOME && path.isAbsolute(env.XDG_CONFIG_HOME) ? env.XDG_CONFIG_HOME : path.join(os.homedir(), '.config');
  const runtime = env.XDG_RUNTIME_DIR && path.isAbsolute(env.XDG_RUNTIME_DIR) ? env.XDG_RUNTIME_DIR : `/run/user/${os.userInfo().uid}`;
  return {
    systemUnitDir: over.systemUnitDir ?? '/etc/systemd/system',
    userUnitDir: over.userUnitDir ?? path.join(config, 'systemd', 'user'),
    systemctl: over.systemctl ?? ['systemctl'],
    crontab: over.crontab ?? ['crontab'],
    systemdRunning: over.systemdRunning ?? (await isDir('/run/systemd/system')),
    userManagerRunning: over.userManagerRunning ?? (await isDir(path.join(runtime, 'systemd'))),
    lingerDir: over.lingerDir ?? '/var/lib/systemd/linger',
    user,
  };
}

/** ScheduleEnv's fields from PLONE_BACKUP_SCHEDULE_ENV (JSON), checked; {} when it is not set. */
export function scheduleEnvOverrides(env: NodeJS.ProcessEnv = process.env): Partial<ScheduleEnv> {
  const raw = env[SCHEDULE_ENV_VAR];
  if (!raw) return {};
  const bad = () =>
    new PloneBackupError('USAGE', `${SCHEDULE_ENV_VAR} is not a JSON object of ScheduleEnv's fields.`, { hint: `Unset ${SCHEDULE_ENV_VAR}: it is for the project's tests.` });
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    throw bad();
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad();
  const o = v as Record<string, unknown>;
  const out: Partial<ScheduleEnv> = {};
  for (const k of ['systemUnitDir', 'userUnitDir', 'lingerDir', 'user'] as const) {
    if (o[k] === undefined) continue;
    if (typeof o[k] !== 'string' || !o[k]) throw bad();
    out[k] = o[k] as string;
  }
  for (const k of ['systemctl', 'crontab'] as const) {
    if (o[k] === undefined) continue;
    const a = o[k];
    if (!Array.isArray(a) || !a.length || !a.every((x) => typeof x === 'string')) throw bad();
    out[k] = a as string[];
  }
  for (const k of ['systemdRunning', 'userManagerRunning'] as const) {
    if (o[k] === undefined) continue;
    if (typeof o[k] !== 'boolean') throw bad();
    out[k] = o[k] as boolean;
  }
  return out;
}

/** systemd where it runs, else cron; or what was asked. */
export function chooseTarget(asked: { systemd?: boolean; user?: boolean; cron?: boolean }, env: ScheduleEnv): ScheduleTarget {
  if (asked.cron && (asked.systemd || asked.user)) {
    throw new PloneBackupError('USAGE', '--cron cannot be combined with --systemd or --user.', {
      hint: 'Pass one of them, or none to use systemd where it runs and cron elsewhere.',
    });
  }
  if (asked.user) return 'systemd-user';
  if (asked.systemd) return 'systemd';
  if (asked.cron) return 'cron';
  return env.systemdRunning ? 'systemd' : 'cron';
}

interface ToolRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a tool (argv, no shell) with `input` on its stdin; its output capped (TOO_LARGE past it), in the C locale. */
async function runTool(argv: readonly string[], o: { input?: string; cap?: number; signal?: AbortSignal } = {}): Promise<ToolRun> {
  checkAbort(o.signal);
  const cap = o.cap ?? 64 * 1024;
  return new Promise<ToolRun>((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { env: { ...process.env, LC_ALL: 'C' }, stdio: ['pipe', 'pipe', 'pipe'], signal: o.signal });
    // Not spawn's own `timeout`: its timer outlives a command that could not be started (ENOENT), and holds the process.
    const timer = setTimeout(() => child.kill('SIGKILL'), TOOL_TIMEOUT_MS);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outBytes = 0;
    let errBytes = 0;
    let tooLarge = false;
    child.stdout.on('data', (b: Buffer) => {
      outBytes += b.length;
      if (outBytes > cap) {
        tooLarge = true;
        child.kill('SIGKILL');
      } else out.push(b);
    });
    child.stderr.on('data', (b: Buffer) => {
      if (errBytes < 16 * 1024) err.push(b);
      errBytes += b.length;
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(o.input ?? '');
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      if (tooLarge) {
        reject(
          new PloneBackupError('TOO_LARGE', `${argv.join(' ')} printed more than ${cap} bytes, more than a crontab can sensibly be.`, {
            hint: 'Look at it with crontab -l; nothing was changed.',
          }),
        );
      } else resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8').trim() });
    });
  }).catch((e: unknown) => {
    checkAbort(o.signal);
    if (PloneBackupError.is(e)) throw e;
    const missing = (e as NodeJS.ErrnoException).code === 'ENOENT';
    throw new PloneBackupError('SCHEDULE_FAILED', missing ? `${argv[0]} is not installed here.` : `${argv[0]} could not be run: ${(e as Error).message}.`, {
      hint: argv[0]!.endsWith('crontab') ? 'Install cron (apt-get install cron), or use a systemd timer (--systemd).' : 'Use cron instead (--cron).',
      cause: e,
    });
  });
}

function toolFailed(argv: readonly string[], r: ToolRun, what: string, hint: string): PloneBackupError {
  const said = r.stderr.split('\n').filter(Boolean).slice(-2).join(' / ');
  return new PloneBackupError('SCHEDULE_FAILED', `${argv.join(' ')} failed (exit ${r.code ?? 'by a signal'})${said ? `: ${said}` : ''}; ${what}.`, { hint });
}

// ---------------------------------------------------------------------------
// Reading back what is ours

export interface InstalledJob {
  job: ScheduleJob;
  /** As found: OnCalendar= values, or the time fields of the crontab lines. */
  when: string[];
  /** As found: ExecStart= (systemd) or the line's command (cron). */
  command: string;
  /** The program the command runs, when the command is as we write it. */
  program?: string;
  /** systemd: whether the timer is enabled (linked into timers.target.wants). */
  enabled?: boolean;
}

export interface InstalledSchedule {
  target: ScheduleTarget;
  id: string;
  /** What was asked, from the marker; undefined when it is not one we write. */
  spec?: ScheduleSpec;
  jobs: InstalledJob[];
  /** The unit files, or `crontab` (with the crontab command). */
  files: string[];
  /** The times or the jobs differ from what the marker's spec gives: edited by hand. */
  edited: boolean;
  /** What would keep it from running: a program that is gone, a timer not enabled, user timers without lingering. */
  problems: string[];
}

function parseMarker(line: string, id: string): ScheduleSpec | undefined {
  const prefix = `${SCHEDULE_MARK}:${id} `;
  if (!line.startsWith(prefix) || line.length > MAX_LINE) return undefined;
  const rest = line.slice(prefix.length);
  if (!rest.startsWith('{')) return undefined;
  let m: Partial<Marker>;
  try {
    m = JSON.parse(rest) as Partial<Marker>;
  } catch {
    return undefined;
  }
  if (typeof m !== 'object' || m === null || m.v !== 1 || !SCHEDULE_EVERY.includes(m.every as ScheduleEvery)) return undefined;
  if (m.full !== undefined && !WEEKDAYS.includes(m.full)) return undefined;
  if (m.drill !== undefined && m.drill !== true) return undefined;
  return { every: m.every!, ...(m.full ? { full: m.full } : {}), ...(m.drill ? { drill: true } : {}) };
}

/** The program of an ExecStart= as we write it (`"…" "…"`: `%%` for a %, nothing else escaped); undefined for any other shape. */
export function execProgram(exec: string): string | undefined {
  if (!exec.startsWith('"')) return undefined;
  let out = '';
  for (let i = 1; i < exec.length; i++) {
    const c = exec[i]!;
    if (c === '"') return exec[i + 1] === undefined || exec[i + 1] === ' ' ? out : undefined;
    if (c === '%' && exec[i + 1] === '%') i++;
    out += c;
  }
  return undefined;
}

/** The program of a crontab command as we write it (`cd '…' && exec '…' …`); undefined for any other shape. */
export function cronProgram(cmd: string): string | undefined {
  const plain = cmd.replace(/\\%/g, '%');
  let i = 0;
  /** A single-quoted word at i (with '\\'' for a quote), unquoted; i moves past it. */
  const word = (): string | undefined => {
    if (plain[i] !== "'") return undefined;
    let out = '';
    for (i++; i < plain.length; i++) {
      if (plain[i] !== "'") out += plain[i];
      else if (plain.startsWith(`'\\''`, i)) {
        out += "'";
        i += 3;
      } else {
        i++;
        return out;
      }
    }
    return undefined;
  };
  if (!plain.startsWith('cd ')) return undefined;
  i = 3;
  if (word() === undefined || !plain.startsWith(' && exec ', i)) return undefined;
  i += ' && exec '.length;
  return word();
}

async function isExecutable(p: string): Promise<boolean> {
  return fsp.access(p, 1).then(
    () => true,
    () => false,
  );
}

/** A unit file of ours at `file`: its lines; undefined when absent; 'foreign' when it is there but not ours (a link, not a regular file, no marker). */
async function readUnit(file: string, id: string): Promise<string[] | 'foreign' | undefined> {
  const st = await fsp.lstat(file).catch(() => undefined);
  if (!st) return undefined;
  if (!st.isFile()) return 'foreign';
  let text: string;
  try {
    text = (await readFileCapped(file, MAX_UNIT, { noFollow: true, what: 'The unit file' })).toString('utf8');
  } catch {
    return 'foreign';
  }
  const lines = text.split('\n');
  return lines.some((l) => l.startsWith(`${SCHEDULE_MARK}:${id} `)) ? lines : 'foreign';
}

const valuesOf = (lines: string[], key: string) => lines.filter((l) => l.startsWith(`${key}=`)).map((l) => l.slice(key.length + 1).trim());

function unitDirOf(target: ScheduleTarget, env: ScheduleEnv): string {
  return target === 'systemd-user' ? env.userUnitDir : env.systemUnitDir;
}

async function showSystemd(target: 'systemd' | 'systemd-user', root: string, env: ScheduleEnv): Promise<InstalledSchedule | undefined> {
  const id = scheduleId(root);
  const dir = unitDirOf(target, env);
  const jobs: InstalledJob[] = [];
  const files: string[] = [];
  let spec: ScheduleSpec | undefined;
  let marked = false;
  for (const job of SCHEDULE_JOBS) {
    const base = unitBase(id, job);
    const timer = await readUnit(path.join(dir, `${base}.timer`), id);
    const service = await readUnit(path.join(dir, `${base}.service`), id);
    if (Array.isArray(timer)) files.push(path.join(dir, `${base}.timer`));
    if (Array.isArray(service)) files.push(path.join(dir, `${base}.service`));
    if (!Array.isArray(timer) && !Array.isArray(service)) continue;
    for (const lines of [timer, service]) {
      if (!Array.isArray(lines)) continue;
      marked = true;
      spec ??= lines.map((l) => parseMarker(l, id)).find((s) => s !== undefined);
    }
    const command = Array.isArray(service) ? (valuesOf(service, 'ExecStart')[0] ?? '') : '';
    const enabled = await fsp.lstat(path.join(dir, 'timers.target.wants', `${base}.timer`)).then(
      (s) => s.isSymbolicLink(),
      () => false,
    );
    jobs.push({ job, when: Array.isArray(timer) ? valuesOf(timer, 'OnCalendar') : [], command, program: execProgram(command), enabled });
  }
  if (!marked) return undefined;
  const s: InstalledSchedule = { target, id, spec, jobs, files, edited: false, problems: [] };
  s.edited = isEdited(s, calendarEvent);
  for (const j of jobs) if (!j.enabled) s.problems.push(`the ${j.job} timer is not enabled`);
  if (
    target === 'systemd-user' &&
    !(await fsp.lstat(path.join(env.lingerDir, env.user)).then(
      () => true,
      () => false,
    ))
  ) {
    s.problems.push(`user timers run only while ${env.user} is logged in (loginctl enable-linger ${env.user} lets them run always)`);
  }
  return s;
}

function isEdited(s: InstalledSchedule, render: (slot: Slot) => string): boolean {
  if (!s.spec) return true;
  const want = scheduleSlots(s.spec).map(({ job, slots }) => `${job}=${slots.map(render).join('|')}`);
  const have = s.jobs.map((j) => `${j.job}=${j.when.join('|')}`);
  return want.join('\n') !== have.join('\n') || s.jobs.some((j) => j.program === undefined);
}

/** The crontab's text; '' when the user has none. */
async function readCrontab(env: ScheduleEnv, signal?: AbortSignal): Promise<string> {
  const argv = [...env.crontab, '-l'];
  const r = await runTool(argv, { cap: MAX_CRONTAB, signal });
  if (r.code === 0) return r.stdout;
  if (r.code === 1 && /^no crontab for /im.test(r.stderr)) return '';
  throw toolFailed(argv, r, 'the crontab could not be read', 'Check that cron is installed and that you may use crontab (cron.allow, cron.deny).');
}

interface OurLine {
  index: number;
  job?: ScheduleJob;
}

/** Our lines of the crontab, for `id`: the header, and the job lines by their trailing marker. Linear; nothing is run. */
function ourCronLines(lines: string[], id: string): OurLine[] {
  const out: OurLine[] = [];
  const tail = ` ${SCHEDULE_MARK}:${id}:`;
  lines.forEach((l, index) => {
    if (l.length > MAX_LINE) return;
    if (l.startsWith(`${SCHEDULE_MARK}:${id} `)) return void out.push({ index });
    const at = l.lastIndexOf(tail);
    if (at < 0) return;
    const job = l.slice(at + tail.length) as ScheduleJob;
    if (SCHEDULE_JOBS.includes(job)) out.push({ index, job });
  });
  return out;
}

async function showCron(root: string, env: ScheduleEnv, signal?: AbortSignal): Promise<InstalledSchedule | undefined> {
  const id = scheduleId(root);
  const lines = (await readCrontab(env, signal)).split('\n');
  const ours = ourCronLines(lines, id);
  if (!ours.length) return undefined;
  let spec: ScheduleSpec | undefined;
  const byJob = new Map<ScheduleJob, InstalledJob>();
  for (const o of ours) {
    const l = lines[o.index]!;
    if (!o.job) {
      spec ??= parseMarker(l, id);
      continue;
    }
    // m h dom mon dow command… # marker: the marker cut off, then five fields and the rest.
    const body = l.slice(0, l.lastIndexOf(` ${SCHEDULE_MARK}:`));
    const m = /^\s*(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+/.exec(body);
    const f = m ? m.slice(1, 6) : [body.trim()];
    const cmd = m ? body.slice(m[0].length).trimEnd() : '';
    const j = byJob.get(o.job) ?? { job: o.job, when: [], command: cmd, program: cronProgram(cmd) };
    j.when.push(f.join(' '));
    byJob.set(o.job, j);
  }
  const jobs = SCHEDULE_JOBS.flatMap((j) => (byJob.has(j) ? [byJob.get(j)!] : []));
  const s: InstalledSchedule = { target: 'cron', id, spec, jobs, files: [`crontab (${env.crontab.join(' ')} -l)`], edited: false, problems: [] };
  s.edited = isEdited(s, cronFields);
  return s;
}

/** Adds the problems every target shares: a program that is no longer there. */
async function programProblems(s: InstalledSchedule): Promise<InstalledSchedule> {
  for (const p of new Set(s.jobs.map((j) => j.program).filter((p): p is string => !!p))) {
    if (!(await isExecutable(p))) s.problems.push(`${p}, which it runs, is not there (or not executable) any more`);
  }
  if (s.edited) s.problems.push('its times or commands are not what install writes (edited by hand?); installing again writes them afresh');
  return s;
}

export interface ScheduleOptions {
  env?: ScheduleEnv;
  /** Which targets to look at (default: all three). */
  targets?: readonly ScheduleTarget[];
  signal?: AbortSignal;
}

/**
 * The deployment's schedules, on every target looked at (normally one).
 * A target that cannot be read (no crontab command) is skipped.
 */
export async function showSchedule(root: string, o: ScheduleOptions = {}): Promise<InstalledSchedule[]> {
  const env = o.env ?? (await scheduleEnv());
  const r = await resolvedRoot(root);
  const out: InstalledSchedule[] = [];
  for (const t of o.targets ?? SCHEDULE_TARGETS) {
    let s: InstalledSchedule | undefined;
    if (t === 'cron') {
      s = await showCron(r, env, o.signal).catch((e: unknown) => {
        if (PloneBackupError.is(e, 'SCHEDULE_FAILED') && /is not installed here/.test(e.message)) return undefined;
        throw e;
      });
    } else s = await showSystemd(t, r, env);
    if (s) out.push(await programProblems(s));
  }
  return out;
}

/** "every 15 min (systemd timer)", or "(crontab, edited by hand)". */
export function scheduleLabel(s: InstalledSchedule): string {
  const what = s.spec ? EVERY_WORDS[s.spec.every] : 'scheduled';
  return `${what} (${TARGET_WORDS[s.target]}${s.edited ? ', edited by hand' : ''})`;
}

async function resolvedRoot(root: string): Promise<string> {
  const abs = path.resolve(root);
  return fsp.realpath(abs).catch(() => abs);
}

// ---------------------------------------------------------------------------
// Installing and removing

export interface ScheduleChange {
  target: ScheduleTarget;
  id: string;
  /** Unit files written, or `crontab`. */
  written: string[];
  /** Unit files removed, or `crontab` when our lines were taken out. */
  removed: string[];
  /** What was said along the way: systemd not running, lingering, ours removed from another target. */
  notes: string[];
}

async function systemctl(env: ScheduleEnv, target: ScheduleTarget, args: string[], what: string, signal?: AbortSignal): Promise<void> {
  const argv = [...env.systemctl, ...(target === 'systemd-user' ? ['--user'] : []), ...args];
  const r = await runTool(argv, { signal });
  if (r.code !== 0)
    throw toolFailed(
      argv,
      r,
      what,
      target === 'systemd-user' ? 'Run it in your own login session (systemctl --user must reach your manager), or use --cron.' : 'Run it as root, or use --user or --cron.',
    );
}

function managerRuns(target: ScheduleTarget, env: ScheduleEnv): boolean {
  return target === 'systemd-user' ? env.userManagerRunning : env.systemdRunning;
}

function writeDenied(e: unknown, dir: string, target: ScheduleTarget): never {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
    throw new PloneBackupError(
      'SCHEDULE_FAILED',
      `${dir} cannot be written (${code}): ${target === 'systemd' ? 'system timers need root' : 'the folder is not yours'}; nothing was scheduled.`,
      {
        path: dir,
        hint: 'Run it as root (sudo), or pass --user for your own timers or --cron for your crontab.',
        cause: e,
      },
    );
  }
  throw toPloneBackupError(e, dir);
}

async function installSystemd(plan: SchedulePlan, env: ScheduleEnv, signal?: AbortSignal): Promise<ScheduleChange> {
  const target = plan.target;
  const dir = unitDirOf(target, env);
  const change: ScheduleChange = { target, id: plan.id, written: [], removed: [], notes: [] };
  // Never over what is not ours (a link, a file someone else wrote under our name).
  for (const job of SCHEDULE_JOBS) {
    for (const ext of ['service', 'timer']) {
      const file = path.join(dir, `${unitBase(plan.id, job)}.${ext}`);
      if ((await readUnit(file, plan.id)) === 'foreign') {
        throw new PloneBackupError('WOULD_OVERWRITE', `${file} is there and was not written by plone-backup schedule (or is a link); nothing was scheduled.`, {
          path: file,
          hint: 'Move it away, then schedule again.',
        });
      }
    }
  }
  await fileLayer.mkdir(dir, { recursive: true, mode: 0o755 }).catch((e: unknown) => writeDenied(e, dir, target));
  const live = managerRuns(target, env);
  // Timers of ours already there: restarted after the reload, so that a changed OnCalendar= counts from now.
  const had: string[] = [];
  for (const j of plan.jobs) if (Array.isArray(await readUnit(path.join(dir, `${unitBase(plan.id, j.job)}.timer`), plan.id))) had.push(`${unitBase(plan.id, j.job)}.timer`);
  // Our jobs the plan no longer has (a drill dropped): stopped, then their files removed.
  const stale = SCHEDULE_JOBS.filter((j) => !plan.jobs.some((p) => p.job === j));
  const staleTimers: string[] = [];
  for (const j of stale) if (Array.isArray(await readUnit(path.join(dir, `${unitBase(plan.id, j)}.timer`), plan.id))) staleTimers.push(`${unitBase(plan.id, j)}.timer`);
  if (live && staleTimers.length) await systemctl(env, target, ['disable', '--now', ...staleTimers], 'the timers no longer wanted were left as they were', signal);
  for (const f of plan.files) {
    checkAbort(signal);
    const file = path.join(dir, f.name);
    await writeFileAtomic(file, f.text, 0o644).catch((e: unknown) => writeDenied(e, dir, target));
    change.written.push(file);
  }
  for (const j of stale) change.removed.push(...(await removeUnitFiles(dir, plan.id, j)));
  const timers = plan.jobs.map((j) => `${unitBase(plan.id, j.job)}.timer`);
  if (live) {
    await systemctl(env, target, ['daemon-reload'], 'the unit files are written but systemd has not read them', signal);
    await systemctl(env, target, ['enable', '--now', ...timers], 'the unit files are written but the timers are not started', signal);
    if (had.length) await systemctl(env, target, ['restart', ...had], 'the unit files are written but the timers still run on their old times', signal);
  } else {
    // As `systemctl enable` does offline: WantedBy=timers.target is a link in timers.target.wants.
    const wants = path.join(dir, 'timers.target.wants');
    await fileLayer.mkdir(wants, { recursive: true, mode: 0o755 });
    for (const t of timers) {
      const link = path.join(wants, t);
      const st = await fsp.lstat(link).catch(() => undefined);
      if (st?.isSymbolicLink() && (await fsp.readlink(link)) === `../${t}`) continue;
      if (st) await fileLayer.rm(link, { force: true });
      await fileLayer.symlink(`../${t}`, link);
    }
    await fsyncDir(wants);
    change.notes.push(`${target === 'systemd-user' ? 'Your systemd user manager' : 'systemd'} is not running here: the timers are enabled and start when it does.`);
  }
  if (
    target === 'systemd-user' &&
    !(await fsp.lstat(path.join(env.lingerDir, env.user)).then(
      () => true,
      () => false,
    ))
  ) {
    change.notes.push(`User timers run only while ${env.user} is logged in; loginctl enable-linger ${env.user} lets them run always.`);
  }
  return change;
}

/** Removes a job's unit files (ours only) and its link in timers.target.wants; returns the files removed. */
async function removeUnitFiles(dir: string, id: string, job: ScheduleJob): Promise<string[]> {
  const removed: string[] = [];
  const base = unitBase(id, job);
  const link = path.join(dir, 'timers.target.wants', `${base}.timer`);
  if (
    await fsp.lstat(link).then(
      (s) => s.isSymbolicLink(),
      () => false,
    )
  )
    await fileLayer.rm(link, { force: true });
  for (const ext of ['timer', 'service']) {
    const file = path.join(dir, `${base}.${ext}`);
    if (Array.isArray(await readUnit(file, id))) {
      await fileLayer.rm(file, { force: true });
      removed.push(file);
    }
  }
  if (removed.length) await fsyncDir(dir);
  return removed;
}

async function removeSystemd(target: 'systemd' | 'systemd-user', root: string, env: ScheduleEnv, signal?: AbortSignal): Promise<ScheduleChange | undefined> {
  const id = scheduleId(root);
  const dir = unitDirOf(target, env);
  const present: ScheduleJob[] = [];
  for (const j of SCHEDULE_JOBS) {
    const mine = await Promise.all(['timer', 'service'].map((ext) => readUnit(path.join(dir, `${unitBase(id, j)}.${ext}`), id)));
    if (mine.some(Array.isArray)) present.push(j);
  }
  if (!present.length) return undefined;
  const change: ScheduleChange = { target, id, written: [], removed: [], notes: [] };
  const live = managerRuns(target, env);
  if (live) await systemctl(env, target, ['disable', '--now', ...present.map((j) => `${unitBase(id, j)}.timer`)], 'the timers were left as they were', signal);
  for (const j of present) change.removed.push(...(await removeUnitFiles(dir, id, j)));
  if (live) await systemctl(env, target, ['daemon-reload'], 'the unit files are removed but systemd still knows them until the next reload', signal);
  return change;
}

/** The crontab without our lines, and with `add` in place of the first of them (or at the end). */
export function editCrontab(text: string, id: string, add: string[]): string {
  const lines = text === '' ? [] : text.split('\n');
  // split gives a last '' for a text ending in a newline: that newline is written again after the last line.
  if (text.endsWith('\n')) lines.pop();
  const ours = ourCronLines(lines, id);
  const drop = new Set(ours.map((o) => o.index));
  const at = ours.length ? ours[0]!.index : lines.length;
  const out: string[] = [];
  lines.forEach((l, i) => {
    if (i === at) out.push(...add);
    if (!drop.has(i)) out.push(l);
  });
  if (at === lines.length) out.push(...add);
  return out.length ? `${out.join('\n')}\n` : '';
}

async function writeCrontab(env: ScheduleEnv, text: string, signal?: AbortSignal): Promise<void> {
  // A crontab that would hold nothing is removed, as it was before our lines came.
  const argv = text.trim() === '' ? [...env.crontab, '-r'] : [...env.crontab, '-'];
  const r = await runTool(argv, { input: text.trim() === '' ? undefined : text, signal });
  if (r.code !== 0) throw toolFailed(argv, r, 'the crontab was left as it was', 'Check that cron is installed and that you may use crontab (cron.allow, cron.deny).');
}

async function installCron(plan: SchedulePlan, env: ScheduleEnv, signal?: AbortSignal): Promise<ScheduleChange> {
  const before = await readCrontab(env, signal);
  const after = editCrontab(before, plan.id, plan.cronLines);
  const change: ScheduleChange = { target: 'cron', id: plan.id, written: [], removed: [], notes: [] };
  if (after !== before) await writeCrontab(env, after, signal);
  change.written.push(`crontab (${env.crontab.join(' ')})`);
  if (!(await cronRuns())) change.notes.push('No cron daemon seems to run here: the lines are in the crontab, and run when cron does.');
  return change;
}

/** Whether a cron daemon runs (its pid file, as Debian's cron and cronie write it); a hint only. */
async function cronRuns(): Promise<boolean> {
  for (const f of ['/run/crond.pid', '/var/run/crond.pid', '/run/cron.pid'])
    if (
      await fsp.lstat(f).then(
        () => true,
        () => false,
      )
    )
      return true;
  return false;
}

async function removeCron(root: string, env: ScheduleEnv, signal?: AbortSignal): Promise<ScheduleChange | undefined> {
  const id = scheduleId(root);
  const before = await readCrontab(env, signal);
  const after = editCrontab(before, id, []);
  if (after === before) return undefined;
  await writeCrontab(env, after, signal);
  return { target: 'cron', id, written: [], removed: [`crontab (${env.crontab.join(' ')})`], notes: [] };
}

async function removeFrom(target: ScheduleTarget, root: string, env: ScheduleEnv, signal?: AbortSignal): Promise<ScheduleChange | undefined> {
  return target === 'cron' ? removeCron(root, env, signal) : removeSystemd(target, root, env, signal);
}

/**
 * Schedules the deployment: writes the target's units or lines (replacing
 * ours), starts them, and removes ours from the other targets (best effort:
 * what cannot be removed there is said in the notes).
 */
export async function installSchedule(
  spec: ScheduleSpec,
  input: ScheduleInput,
  target: ScheduleTarget,
  o: { env?: ScheduleEnv; signal?: AbortSignal } = {},
): Promise<ScheduleChange & { plan: SchedulePlan }> {
  const env = o.env ?? (await scheduleEnv());
  const root = await resolvedRoot(input.root);
  const plan = planSchedule(spec, { ...input, root, base: input.base ?? path.resolve(input.root) }, target);
  const change = target === 'cron' ? await installCron(plan, env, o.signal) : await installSystemd(plan, env, o.signal);
  for (const other of SCHEDULE_TARGETS) {
    if (other === target) continue;
    try {
      const r = await removeFrom(other, root, env, o.signal);
      if (r) change.notes.push(`Removed the earlier schedule from the ${TARGET_WORDS[other]} (${r.removed.join(', ')}).`);
    } catch (e) {
      if (PloneBackupError.is(e, 'SCHEDULE_FAILED') && /is not installed here/.test(e.message)) continue;
      change.notes.push(`An earlier schedule in the ${TARGET_WORDS[other]} could not be looked at or removed: ${(e as Error).message}`);
    }
  }
  return { ...change, plan };
}

/** Removes the deployment's schedule from every target looked at; the targets it was removed from. */
export async function removeSchedule(root: string, o: ScheduleOptions = {}): Promise<ScheduleChange[]> {
  const env = o.env ?? (await scheduleEnv());
  const r = await resolvedRoot(root);
  const out: ScheduleChange[] = [];
  for (const t of o.targets ?? SCHEDULE_TARGETS) {
    try {
      const c = await removeFrom(t, r, env, o.signal);
      if (c) out.push(c);
    } catch (e) {
      // No crontab command where none was asked for: nothing of ours can be there.
      if (!o.targets && PloneBackupError.is(e, 'SCHEDULE_FAILED') && /is not installed here/.test(e.message)) continue;
      throw e;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// The command to schedule, for a caller that is not plone-backup itself (the extension)

/**
 * How to run plone-backup from cron or systemd: `plone-backup` found on
 * `pathEnv` (absolute folders only), resolved through links; a JavaScript
 * file (npm's link to dist/cli.js) is run by the `node` found the same way.
 * Undefined when there is none.
 */
export async function findCli(pathEnv: string | undefined = process.env.PATH): Promise<string[] | undefined> {
  const find = async (name: string) => {
    for (const d of (pathEnv ?? '').split(path.delimiter)) {
      if (!path.isAbsolute(d)) continue;
      const p = path.join(d, name);
      const st = await fsp.stat(p).catch(() => undefined);
      if (st?.isFile() && (await isExecutable(p))) return fsp.realpath(p);
    }
    return undefined;
  };
  const cli = await find('plone-backup');
  if (!cli) return undefined;
  if (!/\.[cm]?js$/.test(cli)) return [cli];
  const node = await find('node');
  return node ? [node, cli] : undefined;
}

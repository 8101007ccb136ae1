/**
 * The run log: one JSON line for every run of a command that backs up,
 * restores or checks a deployment, by whoever started it (cron through the
 * CLI, a person in the editor), appended to `.plone-backup.runs.jsonl` in the
 * backups folder of the main storage, the one place every run of the
 * deployment knows, beside what it is about (`status` reads it back):
 *
 *   {"v":1,"command":"backup","outcome":"ok","start":"…Z","end":"…Z","seconds":1.2,
 *    "host":"web1","pid":4242,"via":"cli",
 *    "storages":[{"name":"main","stamp":"2026-03-01-10-00-00","action":"incremental",
 *                 "bytes":1234,"transactions":3,"blobFiles":2}]}
 *   {"v":1,"command":"backup","outcome":"failed",…,"error":{"code":"IO","message":"The disk is full …"}}
 *
 * The seam is `recordRun` (`startRun` for a caller that must record a run
 * which failed before its work began), called by both shells around a
 * command, not by backupDeployment and friends themselves: a restore run is
 * the open, the confirmation and the run (a declined confirmation is no run);
 * verify, check and drill "fail" by what they find, not by throwing; the
 * extension's diagnostics call the same checks in the background, which are
 * no runs; and on_failure belongs to the command as a whole. What each kind of
 * run records and when it counts as failed is decided here (`summarize`), not
 * in the shells.
 *
 * Writing: the line is at most MAX_LINE bytes and goes out in one write(2) on
 * a descriptor opened O_APPEND, so lines of runs writing at once never tear
 * or interleave. The file is created no more readable than the main Data.fs,
 * never through a link (O_NOFOLLOW) nor into a FIFO (O_NONBLOCK, then fstat),
 * and rotated when it would pass ROTATE_AT (`.1` … `.KEEP`). A run log that
 * cannot be written never fails the run: the problem goes to the run's log.
 * No folder is made for it: before the first backup made the backups folder
 * (or while its disk is not mounted) runs are not recorded.
 *
 * A push and a forget (remote/) are runs too: a push that fails (or whose
 * `--forget` fails) runs on_failure as a failed backup does, and its record
 * names the remote (`remote`) and what went up per storage.
 *
 * Reading (`readRuns`): as hostile input, like every file of ours: capped
 * (readFileCapped), no link followed, only a regular file; a line that is not
 * a record we write (garbage, a truncated tail) is skipped and counted.
 */

import { constants as fsc, promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { PloneBackupError, isAbort, toPloneBackupError } from '../base/errors';
import { fileLayer, modesFrom, readFileCapped, writeAll } from '../base/io';
import type { Deployment, StorageConfig } from './deployment';
import { hookEnv, lastLines, runConfigured } from './hooks';
import { commandKind, foldersFor, restoreCommandKind, type BackupCommand, type Kind } from './kinds';
import type { StorageBackupResult } from './backup';
import type { StorageRestoreResult } from './restore';
import type { Finding } from './check';
import type { DrillResult } from './drill';
import type { UndoResult } from './kept';

/** Not `.plone-backup-…`: that is the temp files' prefix, which a backup removes from its folder. */
export const RUN_LOG = '.plone-backup.runs.jsonl';
/** The run log is rotated when a line would take it past this size. */
export const ROTATE_AT = 1 << 20;
/** Rotated logs kept: `.1` (the newest) to `.KEEP`. */
export const KEEP_ROTATED = 3;
/** A line is never longer (its messages are cut to fit): one write, however the system splits writes. */
export const MAX_LINE = 8 * 1024;
/** What is read back of one log file: far above what rotation lets it grow to. */
export const READ_CAP = 4 << 20;
/** How long on_failure may run before it is stopped. */
export const ON_FAILURE_TIMEOUT_MS = 5 * 60_000;

export const BACKUP_COMMANDS = ['backup', 'fullbackup', 'snapshot', 'zipbackup'] as const;
export const RESTORE_COMMANDS = ['restore', 'snapshotrestore', 'ziprestore', 'altrestore', 'undorestore'] as const;
/** The off-site commands (remote/): a push, and the remote's retention. */
export const REMOTE_COMMANDS = ['push', 'forget'] as const;
export const RUN_COMMANDS = [...BACKUP_COMMANDS, ...RESTORE_COMMANDS, 'verify', 'check', 'drill', ...REMOTE_COMMANDS] as const;
export type RunCommand = (typeof RUN_COMMANDS)[number];

/** What a run of each command returns: what its record is made from. */
export interface RunResults {
  backup: StorageBackupResult[];
  fullbackup: StorageBackupResult[];
  snapshot: StorageBackupResult[];
  zipbackup: StorageBackupResult[];
  restore: StorageRestoreResult[];
  snapshotrestore: StorageRestoreResult[];
  ziprestore: StorageRestoreResult[];
  altrestore: StorageRestoreResult[];
  undorestore: UndoResult;
  verify: Finding[];
  check: Finding[];
  drill: DrillResult[];
  push: PushRun;
  forget: ForgetRun;
}

/** What a push returns (remote/push.ts's PushResult, and the forget of `push --forget`), as far as its record needs. */
export interface PushRun {
  url: string;
  storages: { storage: string; pushed: string[]; skipped: unknown[]; objects: number; bytes: number }[];
  forget?: ForgetRun;
}

/** What a forget returns (remote/forget.ts's ForgetResult), as far as its record needs. */
export interface ForgetRun {
  url: string;
  dryRun: boolean;
  storages: { storage: string; forgotten: string[]; objects: string[] }[];
}

/** What a run did to one storage (the fields that apply to its command). */
export interface RunStorage {
  name: string;
  /** The stamp written (backup), restored (restore) or drilled. */
  stamp?: string;
  /** full, incremental or none (backup); full, incremental, blobs, … (restore). */
  action?: string;
  /** Bytes written to disk: the piece (compressed as stored) for a backup, the files for a restore, read back for a drill. */
  bytes?: number;
  transactions?: number;
  blobFiles?: number;
  /** Drill: whether this storage's restore proved good. */
  ok?: boolean;
  /** push, forget: generations pushed or forgotten, and objects sent or deleted. */
  generations?: number;
  objects?: number;
  errors?: number;
  warnings?: number;
}

export interface RunRecord {
  v: 1;
  command: RunCommand;
  outcome: 'ok' | 'failed';
  /** ISO times (UTC). */
  start: string;
  end: string;
  seconds: number;
  host: string;
  pid: number;
  /** Who ran it: cli, extension. */
  via?: string;
  storages: RunStorage[];
  /** push, forget: the remote's URL (never with credentials: those are refused in a URL). */
  remote?: string;
  error?: { code: string; message: string };
}

export interface RunLogOptions {
  /** The run's log: where a run log that cannot be written, and on_failure's output, are said. */
  log?: (m: string) => void;
  /** Problems with the run log or on_failure (default: `log`); the CLI prints them as warnings. */
  warn?: (m: string) => void;
  /** cli, extension. */
  via?: string;
  /** Run the deployment's on_failure when the run fails (default true). */
  onFailure?: boolean;
  now?: () => Date;
  /** push, forget: the remote's URL, recorded also when the run fails before it returns one (never a URL carrying credentials). */
  remote?: string;
}

/** The storage whose backups folder holds the run log: main, else the first. */
function mainStorage(dep: Deployment): StorageConfig {
  return dep.storages.find((s) => s.name === 'main') ?? dep.storages[0]!;
}

/** Where the deployment's runs are recorded. */
export function runLogPath(dep: Deployment): string {
  return path.join(mainStorage(dep).dirs.backups, RUN_LOG);
}

/** The log file and its rotated predecessors, newest first. */
export function runLogFiles(file: string): string[] {
  return [file, ...Array.from({ length: KEEP_ROTATED }, (_, i) => `${file}.${i + 1}`)];
}

// ---------------------------------------------------------------------------
// Recording

export interface RunHandle<C extends RunCommand> {
  readonly started: Date;
  /** Runs `fn` and records its result, or its failure (rethrown). A result of `undefined` is no run (a declined confirmation): nothing is recorded. */
  track<T extends RunResults[C] | undefined>(fn: () => Promise<T>): Promise<T>;
  /** Records a failure that happened outside `track` (a restore that could not even be opened). */
  failed(e: unknown): Promise<void>;
}

/** Starts timing a run of `command`; nothing is written until it ends. */
export function startRun<C extends RunCommand>(dep: Deployment, command: C, o: RunLogOptions = {}): RunHandle<C> {
  const now = o.now ?? (() => new Date());
  const started = now();
  let done = false;
  const finish = async (outcome: Pick<RunRecord, 'outcome' | 'storages' | 'remote' | 'error'>) => {
    if (done) return;
    done = true;
    const end = now();
    const rec: RunRecord = {
      v: 1,
      command,
      outcome: outcome.outcome,
      start: started.toISOString(),
      end: end.toISOString(),
      seconds: Math.max(0, Math.round(end.getTime() - started.getTime()) / 1000),
      host: os.hostname(),
      pid: process.pid,
      ...(o.via ? { via: o.via } : {}),
      storages: outcome.storages,
      ...(outcome.remote ? { remote: outcome.remote } : {}),
      ...(outcome.error ? { error: outcome.error } : {}),
    };
    await appendRun(dep, rec, o);
    if (rec.outcome === 'failed' && o.onFailure !== false) await runOnFailure(dep, rec, o);
  };
  const failed = async (e: unknown) => {
    const err = toPloneBackupError(e);
    await finish({ outcome: 'failed', storages: [], remote: o.remote, error: { code: isAbort(e) ? 'ABORTED' : err.code, message: err.userMessage } });
  };
  return {
    started,
    async track<T extends RunResults[C] | undefined>(fn: () => Promise<T>): Promise<T> {
      let res: T;
      try {
        res = await fn();
      } catch (e) {
        await failed(e);
        throw e;
      }
      if (res !== undefined) await finish(await summarize(dep, command, res as RunResults[C]));
      return res;
    },
    failed,
  };
}

/** Runs `fn` as a run of `command` and records it: see the header. */
export async function recordRun<C extends RunCommand, T extends RunResults[C] | undefined>(dep: Deployment, command: C, fn: () => Promise<T>, o: RunLogOptions = {}): Promise<T> {
  return startRun(dep, command, o).track(fn);
}

/** The findings that fail `verify`: errors, and a piece no .dat lists (check only warns about it). */
export function verifyFailures(findings: Finding[]): Finding[] {
  return findings.filter((f) => f.severity === 'error' || f.code === 'REPOSITORY_INVALID');
}

/** A run's record from what it returned: what it did per storage, and whether it failed. */
async function summarize<C extends RunCommand>(dep: Deployment, command: C, res: RunResults[C]): Promise<Pick<RunRecord, 'outcome' | 'storages' | 'remote' | 'error'>> {
  if (command === 'push') {
    const r = res as PushRun;
    const storages = r.storages.map((x) =>
      clean({
        name: x.storage,
        stamp: x.pushed.at(-1),
        action: x.pushed.length ? 'pushed' : 'none',
        generations: x.pushed.length,
        objects: x.objects,
        bytes: x.bytes,
        warnings: x.skipped.length,
      }),
    );
    return { outcome: 'ok', storages, remote: r.url };
  }
  if (command === 'forget') {
    const r = res as ForgetRun;
    const storages = r.storages.map((x) => ({
      name: x.storage,
      action: r.dryRun ? 'dry-run' : x.forgotten.length ? 'forgot' : 'none',
      generations: x.forgotten.length,
      objects: x.objects.length,
    }));
    return { outcome: 'ok', storages, remote: r.url };
  }
  if ((BACKUP_COMMANDS as readonly string[]).includes(command)) {
    const kind = commandKind(command as BackupCommand);
    const storages: RunStorage[] = [];
    for (const r of res as StorageBackupResult[]) {
      const f = r.filestorage;
      const s = dep.storages.find((x) => x.name === r.storage);
      const bytes =
        f.piece && s
          ? await fsp.lstat(path.join(foldersFor(s, kind).repo, f.piece)).then(
              (st) => st.size,
              () => f.end - f.start,
            )
          : 0;
      storages.push(clean({ name: r.storage, stamp: f.stamp, action: f.action, bytes, transactions: f.transactions, blobFiles: r.blobFiles }));
    }
    return { outcome: 'ok', storages };
  }
  if ((RESTORE_COMMANDS as readonly string[]).includes(command)) {
    const list = command === 'undorestore' ? (res as UndoResult).results : (res as StorageRestoreResult[]);
    return { outcome: 'ok', storages: list.map((r) => clean({ name: r.storage, stamp: r.stamp, action: r.mode, bytes: r.bytesWritten, blobFiles: r.blobFilesAdded })) };
  }
  if (command === 'verify' || command === 'check') {
    const findings = res as Finding[];
    const failing = command === 'verify' ? verifyFailures(findings) : findings.filter((f) => f.severity === 'error');
    const names = [...new Set([...dep.storages.map((s) => s.name), ...findings.map((f) => f.storage)])];
    const storages = names.map((name) => {
      const mine = findings.filter((f) => f.storage === name);
      return { name, errors: mine.filter((f) => failing.includes(f)).length, warnings: mine.filter((f) => f.severity === 'warning' && !failing.includes(f)).length };
    });
    if (!failing.length) return { outcome: 'ok', storages };
    const first = failing[0]!;
    const code = command === 'verify' ? 'PIECE_MISMATCH' : 'CHECK_FAILED';
    return {
      outcome: 'failed',
      storages,
      error: {
        code,
        message: `${failing.length} problem${failing.length > 1 ? 's' : ''} found${command === 'verify' ? ' in the backups' : ''}: [${first.storage}] ${first.code}: ${first.message}`,
      },
    };
  }
  const drills = res as DrillResult[];
  const storages = drills.map((r) => clean({ name: r.storage, stamp: r.stamp || undefined, ok: r.ok, bytes: r.bytes, transactions: r.transactions, blobFiles: r.blobFiles }));
  const bad = drills.filter((r) => !r.ok);
  if (!bad.length) return { outcome: 'ok', storages };
  return {
    outcome: 'failed',
    storages,
    error: { code: 'DRILL_FAILED', message: `The restore drill failed: ${bad.map((r) => `${r.storage}${r.stamp ? ` ${r.stamp}` : ''}: ${r.problems.join('; ')}`).join('. ')}` },
  };
}

/** Without the fields that are undefined (JSON would drop them anyway; tests compare). */
function clean<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

/** The record as one line of at most MAX_LINE bytes: the error message is cut to fit, then the storages' details. */
export function formatRunLine(rec: RunRecord): string {
  let line = JSON.stringify(rec) + '\n';
  if (Buffer.byteLength(line) <= MAX_LINE) return line;
  const r: RunRecord = { ...rec };
  if (r.error) {
    const over = Buffer.byteLength(line) - MAX_LINE;
    const msg = r.error.message;
    r.error = { code: r.error.code.slice(0, 64), message: `${msg.slice(0, Math.max(0, msg.length - over - 200))}…` };
    line = JSON.stringify(r) + '\n';
  }
  // Many storages (or a message made of multi-byte characters): the essentials only.
  while (Buffer.byteLength(line) > MAX_LINE && r.storages.length) {
    r.storages = r.storages.slice(0, Math.floor(r.storages.length / 2));
    line = JSON.stringify(r) + '\n';
  }
  if (Buffer.byteLength(line) > MAX_LINE && r.error) {
    r.error = { code: r.error.code, message: r.error.message.slice(0, 500) };
    line = JSON.stringify(r) + '\n';
  }
  return line;
}

/**
 * Appends the record to the deployment's run log (see the header). Never
 * throws: a log that cannot be written is said through `o.warn` / `o.log`.
 */
export async function appendRun(dep: Deployment, rec: RunRecord, o: Pick<RunLogOptions, 'log' | 'warn'> = {}): Promise<void> {
  const file = runLogPath(dep);
  try {
    const modes = await modesFrom(mainStorage(dep).file);
    // No backups folder yet (no backup was ever made, or its disk is not mounted): a run log is not
    // worth making one (a failed run writes nothing else either); said in the run's log only.
    if (
      !(await fsp.stat(path.dirname(file)).then(
        (st) => st.isDirectory(),
        () => false,
      ))
    ) {
      o.log?.(`The ${rec.command} is not recorded in a run log: there is no backups folder ${path.dirname(file)} yet.`);
      return;
    }
    const line = Buffer.from(formatRunLine(rec));
    let fh: FileHandle | undefined = await openLog(file, modes.file);
    try {
      const st = await fh.stat();
      if (st.size > 0 && st.size + line.length > ROTATE_AT) {
        await fh.close();
        fh = undefined;
        await rotate(file);
        fh = await openLog(file, modes.file);
      }
      // One write, O_APPEND: the whole line lands at the end, after any other run's.
      await writeAll(fh, line, null, file);
    } finally {
      await fh?.close().catch(() => undefined);
    }
  } catch (e) {
    const err = toPloneBackupError(e, file);
    (o.warn ?? o.log)?.(
      `The run log ${file} could not be written (${err.message.replace(/\.$/, '')}); the ${rec.command} itself ${rec.outcome === 'ok' ? 'succeeded' : 'failed as reported'}.`,
    );
  }
}

async function openLog(file: string, mode: number): Promise<FileHandle> {
  let fh: FileHandle;
  try {
    fh = await fileLayer.open(file, fsc.O_WRONLY | fsc.O_APPEND | fsc.O_CREAT | fsc.O_NOFOLLOW | fsc.O_NONBLOCK, mode);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') throw new PloneBackupError('UNSAFE', `${file} is a symbolic link, which is never followed here.`, { path: file });
    // A FIFO without a reader.
    if (code === 'ENXIO') throw new PloneBackupError('UNSAFE', `${file} is not a regular file.`, { path: file });
    throw e;
  }
  const st = await fh.stat();
  if (!st.isFile()) {
    await fh.close();
    throw new PloneBackupError('UNSAFE', `${file} is not a regular file.`, { path: file });
  }
  return fh;
}

/** log.(KEEP-1) → log.KEEP, …, log → log.1. Two runs rotating at once may lose a rotated file's worth of history, never a line being written. */
async function rotate(file: string): Promise<void> {
  const files = runLogFiles(file);
  for (let i = files.length - 2; i >= 0; i--) {
    await fileLayer.rename(files[i]!, files[i + 1]!).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw e;
    });
  }
}

// ---------------------------------------------------------------------------
// on_failure

/** What on_failure finds in its environment beyond hookEnv's (exported for tests and the README's table). */
export function failureEnv(dep: Deployment, rec: RunRecord): Record<string, string> {
  const kind: Kind = (BACKUP_COMMANDS as readonly string[]).includes(rec.command) ? commandKind(rec.command as BackupCommand) : (restoreCommandKind(rec.command) ?? 'backup');
  return {
    ...hookEnv(dep, { command: rec.command, kind, phase: 'failure' }),
    PLONE_BACKUP_ERROR_CODE: rec.error?.code ?? '',
    PLONE_BACKUP_ERROR: rec.error?.message ?? '',
    PLONE_BACKUP_PHASE: 'failure',
    PLONE_BACKUP_STARTED: rec.start,
    PLONE_BACKUP_ENDED: rec.end,
    PLONE_BACKUP_HOST: rec.host,
    PLONE_BACKUP_ROOT: dep.root,
    PLONE_BACKUP_RUN_LOG: runLogPath(dep),
  };
}

/** Runs the deployment's on_failure for a failed run; its own failure is only said, never thrown. */
async function runOnFailure(dep: Deployment, rec: RunRecord, o: RunLogOptions): Promise<void> {
  await onFailureCommand(dep.root, dep.settings.onFailure, failureEnv(dep, rec), o);
}

async function onFailureCommand(cwd: string, cmd: string, env: Record<string, string>, o: Pick<RunLogOptions, 'log' | 'warn'>): Promise<void> {
  if (!cmd.trim()) return;
  const warn = o.warn ?? o.log;
  try {
    // Not the run's signal: a cancelled run is a failure to report too.
    const { code, output } = await runConfigured(cwd, cmd, 'on_failure', env, { log: o.log, timeoutMs: ON_FAILURE_TIMEOUT_MS });
    if (code !== 0) warn?.(`The on_failure \`${cmd}\` failed too (exit ${code ?? 'by a signal or after its time limit'})${output ? `: ${lastLines(output)}` : ''}.`);
  } catch (e) {
    warn?.(toPloneBackupError(e).message);
  }
}

/**
 * on_failure for a run that failed before its deployment could be read (no
 * site found, a plone-backup.json that cannot be used): only a command given
 * by the caller (`--on-failure`) can run then, in `root`, and nothing is
 * recorded (there is no run log to write to).
 */
export async function reportUnreadDeployment(root: string, cmd: string, command: string, e: unknown, o: Pick<RunLogOptions, 'log' | 'warn' | 'now'> = {}): Promise<void> {
  const err = toPloneBackupError(e);
  const when = (o.now ?? (() => new Date()))().toISOString();
  const env = {
    PLONE_BACKUP_COMMAND: command,
    PLONE_BACKUP_PHASE: 'failure',
    PLONE_BACKUP_ERROR_CODE: err.code,
    PLONE_BACKUP_ERROR: err.userMessage,
    PLONE_BACKUP_STARTED: when,
    PLONE_BACKUP_ENDED: when,
    PLONE_BACKUP_HOST: os.hostname(),
    PLONE_BACKUP_ROOT: root,
  };
  const cwd = await fsp.stat(root).then(
    (st) => (st.isDirectory() ? root : os.tmpdir()),
    () => os.tmpdir(),
  );
  await onFailureCommand(cwd, cmd, env, o);
}

// ---------------------------------------------------------------------------
// Reading

export interface RunLogRead {
  file: string;
  /** Oldest first, the rotated files' before the current one's. */
  records: RunRecord[];
  /** Lines that are no record of ours (garbage, a torn tail), skipped. */
  skipped: number;
  /** Why a log file there could not be read (a link, not a regular file, too large); absent files are no problem. */
  problems: string[];
  /** Whether any log file exists. */
  found: boolean;
}

/** Reads the run log and the newest rotated one (`.1`) as hostile input: see the header. */
export async function readRuns(file: string, opts: { rotated?: number } = {}): Promise<RunLogRead> {
  const out: RunLogRead = { file, records: [], skipped: 0, problems: [], found: false };
  const files = runLogFiles(file)
    .slice(0, 1 + (opts.rotated ?? 1))
    .reverse();
  for (const f of files) {
    let buf: Buffer;
    try {
      buf = await readFileCapped(f, READ_CAP, { noFollow: true, what: 'The run log' });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
      out.found = true;
      out.problems.push(toPloneBackupError(e, f).message);
      continue;
    }
    out.found = true;
    for (const line of buf.toString('utf8').split('\n')) {
      if (!line.trim()) continue;
      const rec = parseRunLine(line);
      if (rec) out.records.push(rec);
      else out.skipped++;
    }
  }
  return out;
}

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;

/** One line as a record, if it is one we write: every field checked, unknown ones dropped. */
export function parseRunLine(line: string): RunRecord | undefined {
  if (line.length > MAX_LINE * 2) return undefined;
  let j: unknown;
  try {
    j = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof j !== 'object' || j === null || Array.isArray(j)) return undefined;
  const r = j as Record<string, unknown>;
  const str = (v: unknown, max = 4096): v is string => typeof v === 'string' && v.length <= max;
  const num = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0;
  if (r.v !== 1 || !(RUN_COMMANDS as readonly unknown[]).includes(r.command) || (r.outcome !== 'ok' && r.outcome !== 'failed')) return undefined;
  if (!str(r.start, 40) || !ISO.test(r.start) || !str(r.end, 40) || !ISO.test(r.end) || !num(r.seconds)) return undefined;
  if (!Array.isArray(r.storages) || r.storages.length > 1000) return undefined;
  const storages: RunStorage[] = [];
  for (const raw of r.storages as unknown[]) {
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return undefined;
    const s = raw as Record<string, unknown>;
    if (!str(s.name, 200) || !s.name) return undefined;
    const st: RunStorage = { name: s.name };
    if (str(s.stamp, 40)) st.stamp = s.stamp;
    if (str(s.action, 40)) st.action = s.action;
    for (const k of ['bytes', 'transactions', 'blobFiles', 'errors', 'warnings', 'generations', 'objects'] as const) if (num(s[k])) st[k] = s[k];
    if (typeof s.ok === 'boolean') st.ok = s.ok;
    storages.push(st);
  }
  const rec: RunRecord = {
    v: 1,
    command: r.command as RunCommand,
    outcome: r.outcome,
    start: r.start,
    end: r.end,
    seconds: r.seconds,
    host: str(r.host, 300) ? r.host : '',
    pid: num(r.pid) ? r.pid : 0,
    storages,
  };
  if (str(r.via, 40)) rec.via = r.via;
  if (str(r.remote, 2100)) rec.remote = r.remote;
  if (r.error !== undefined) {
    const e = r.error as Record<string, unknown> | null;
    if (typeof e !== 'object' || e === null || !str(e.code, 64) || !str(e.message, MAX_LINE)) return undefined;
    rec.error = { code: e.code, message: e.message };
  }
  if (rec.outcome === 'failed' && !rec.error) rec.error = { code: 'UNKNOWN', message: 'failed' };
  return rec;
}

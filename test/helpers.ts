/**
 * Shared helpers of the engine and CLI tests: where the repository and the
 * fixtures are, temp folders that clean up after themselves, directory
 * snapshots (to prove that a failing operation changed nothing), and the
 * fixture data (history.json, Sn.json) with types.
 */
import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FsIndex, PloneBackupError, backup, iterateTransactions, parseStamp, type BackupResult, type ErrorCode } from '../src/engine/internal';

/** The repository root (this file compiles to out/test/helpers.js). */
export const ROOT = path.resolve(__dirname, '..', '..');
export const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'zodb');
export const HISTORY = path.join(FIXTURES, 'history');
export const STATES = path.join(HISTORY, 'states');
export const FIXTURE_REPO = path.join(HISTORY, 'repository');
export const FIXTURE_REPO_GZ = path.join(HISTORY, 'repository-gzip');

export interface RecordJson {
  oid: string;
  pos: number;
  prev: number;
  plen: number;
  blob?: boolean;
  md5?: string;
  backpointer?: number;
}

export interface TxnJson {
  tid: string;
  pos: number;
  /** tlen + 8: from the header to the next transaction. */
  length: number;
  status: string;
  user: string;
  description: string;
  extension_hex: string;
  records: RecordJson[];
}

export interface StorageJson {
  end: number;
  size: number;
  md5: string;
  transactions: TxnJson[];
  index?: Record<string, number>;
  index_pos?: number;
  blobs?: Record<string, string>;
}

export interface HistoryStep {
  stamp: string;
  state: string;
  size: number;
  md5: string;
  last_tid: string;
  blobs: Record<string, string>;
}

export interface HistoryJson {
  blob_layout: string;
  steps: HistoryStep[];
  repository: Record<string, { md5: string; size: number }>;
  repository_gzip: Record<string, { md5: string; size: number }>;
}

export function readJson<T>(file: string): T {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
}

export const history = (): HistoryJson => readJson<HistoryJson>(path.join(HISTORY, 'history.json'));

/** Path of state n (1..6) and its JSON. */
export const statePath = (n: number) => path.join(STATES, `S${n}.fs`);
export const stateJson = (n: number) => readJson<StorageJson>(path.join(STATES, `S${n}.json`));

/** Every Data.fs fixture with its JSON description. */
export function storageFixtures(): { name: string; fs: string; json: string }[] {
  const out = [1, 2, 3, 4, 5, 6].map((n) => ({ name: `S${n}`, fs: statePath(n), json: path.join(STATES, `S${n}.json`) }));
  out.push({ name: 'history/var', fs: path.join(HISTORY, 'var', 'filestorage', 'Data.fs'), json: path.join(HISTORY, 'Data.fs.json') });
  out.push({ name: 'wide-oids', fs: path.join(FIXTURES, 'wide-oids', 'Data.fs'), json: path.join(FIXTURES, 'wide-oids', 'Data.fs.json') });
  out.push({ name: 'lawn', fs: path.join(FIXTURES, 'lawn', 'Data.fs'), json: path.join(FIXTURES, 'lawn', 'Data.fs.json') });
  return out;
}

export function md5(b: Buffer | string): string {
  return createHash('md5').update(b).digest('hex');
}

/** The Date of a repozo stamp (UTC). */
export const stampDate = (stamp: string): Date => parseStamp(stamp);
export const clock = (stamp: string) => () => parseStamp(stamp);

/** A fresh temp folder, removed when the test (or suite) ends. */
export function tmpDir(t: { after: (fn: () => void | Promise<void>) => void }, tag = 'pb-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), tag));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Copies a file or folder (recursively) and makes the copy writable. */
export function copy(src: string, dest: string): string {
  fs.cpSync(src, dest, { recursive: true });
  const fix = (p: string) => {
    const st = fs.statSync(p);
    fs.chmodSync(p, st.isDirectory() ? 0o755 : 0o644);
    if (st.isDirectory()) for (const n of fs.readdirSync(p)) fix(path.join(p, n));
  };
  fix(dest);
  return dest;
}

/** Every file under `dir` (relative name -> md5 of its bytes), symlinks and dirs included by name. */
export function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string, rel: string) => {
    for (const ent of fs.readdirSync(d, { withFileTypes: true })) {
      const r = rel ? `${rel}/${ent.name}` : ent.name;
      const p = path.join(d, ent.name);
      if (ent.isDirectory()) {
        out[r + '/'] = 'dir';
        walk(p, r);
      } else if (ent.isSymbolicLink()) out[r] = 'link:' + fs.readlinkSync(p);
      else out[r] = md5(fs.readFileSync(p));
    }
  };
  walk(dir, '');
  return out;
}

/** Asserts that `p` rejects with a PloneBackupError of `code`; returns the error. */
export async function rejectsWith(p: Promise<unknown> | (() => Promise<unknown>), code: ErrorCode): Promise<PloneBackupError> {
  let caught: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    caught = e;
  }
  assert.ok(caught !== undefined, `expected a ${code} error, but it succeeded`);
  assert.ok(caught instanceof PloneBackupError, `expected a PloneBackupError ${code}, got ${String((caught as Error)?.stack ?? caught)}`);
  assert.equal(caught.code, code, `expected ${code}, got ${caught.code}: ${caught.message}`);
  assert.ok(caught.message.length > 0);
  return caught;
}

/** Synchronous variant of rejectsWith. */
export function throwsWith(fn: () => unknown, code: ErrorCode): PloneBackupError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof PloneBackupError, `expected a PloneBackupError ${code}, got ${String(caught)}`);
  assert.equal(caught.code, code, `expected ${code}, got ${caught.code}: ${caught.message}`);
  return caught;
}

/** The index a full scan of a Data.fs builds, with its committed end. */
export async function scanIndex(file: string): Promise<{ index: FsIndex; end: number }> {
  const index = new FsIndex();
  let end = 4;
  for await (const t of iterateTransactions(file)) {
    for (const r of t.records) index.set(r.oid, r.pos);
    end = t.end;
  }
  return { index, end };
}

/** Names of a folder, sorted. */
export const names = (dir: string): string[] => fs.readdirSync(dir).sort();

/** Flips one bit of a byte of a file in place. */
export function flipByte(file: string, pos: number, mask = 0x01): void {
  const b = fs.readFileSync(file);
  b[pos] ^= mask;
  fs.writeFileSync(file, b);
}

/**
 * Feeds S1..S6 in order through one Data.fs into a new repository
 * `<dir>/<prefix>` at the stamps of history.json, as the fixtures were made.
 * Returns the repository path and each step's backup result.
 */
export async function replayHistory(
  dir: string,
  opts: { gzip?: boolean; quick?: boolean; prefix?: string; steps?: number } = {},
): Promise<{ repo: string; data: string; results: BackupResult[] }> {
  const prefix = opts.prefix ?? (opts.gzip ? 'repository-gzip' : 'repository');
  const repo = path.join(dir, prefix);
  fs.mkdirSync(repo, { recursive: true });
  const data = path.join(dir, 'Data.fs');
  const results: BackupResult[] = [];
  for (const [i, s] of history().steps.slice(0, opts.steps ?? 6).entries()) {
    fs.copyFileSync(statePath(i + 1), data);
    results.push(await backup({ file: data, repository: repo, now: clock(s.stamp), datPrefix: prefix, gzip: opts.gzip, quick: opts.quick, lockWaitMs: 0 }));
  }
  return { repo, data, results };
}

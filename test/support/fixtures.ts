/**
 * The ZODB fixtures (test/fixtures/zodb) with types: the history S1..S6 as
 * collective.recipe.backup saw it (history.json), the Data.fs descriptions
 * (Sn.json), the blob trees of each step, and the clocks for backup stamps.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FsIndex, backup, iterateTransactions, parseStamp, type BackupResult } from '../../src/engine/internal';
import { md5File } from './fs';
import { FIXTURES, HISTORY, STATES } from './paths';
import { nth } from './must';

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
export const historySteps = (): HistoryStep[] => history().steps;

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

/** A clock that always returns the time of a repozo stamp (UTC). */
export const at = (stamp: string) => () => parseStamp(stamp);

/** A clock for backup stamps: each call is `step` seconds after the previous one. */
export function fakeClock(start = '2026-03-01-10-00-00', step = 60): { now: () => Date; peek: () => Date } {
  let t = parseStamp(start).getTime() - step * 1000;
  return {
    now: () => new Date((t += step * 1000)),
    peek: () => new Date(t),
  };
}

/**
 * Writes the blob tree present after history step `n` (0-based) to `dest`:
 * the files history.json lists, taken from the fixture's blobstorage or
 * blobstorage.old (where the pack moved the others), checked by md5.
 */
export function fixtureBlobTree(n: number, dest: string): string {
  const step = nth(historySteps(), n);
  fs.mkdirSync(dest, { recursive: true });
  fs.writeFileSync(path.join(dest, '.layout'), 'bushy\n');
  for (const [rel, sum] of Object.entries(step.blobs)) {
    const srcs = [path.join(HISTORY, 'var', 'blobstorage', rel), path.join(HISTORY, 'var', 'blobstorage.old', rel)];
    const src = srcs.find((s) => fs.existsSync(s));
    assert.ok(src, `fixture blob ${rel} not found`);
    assert.equal(md5File(src!), sum, `fixture blob ${rel} has another md5`);
    fs.mkdirSync(path.dirname(path.join(dest, rel)), { recursive: true });
    fs.copyFileSync(src!, path.join(dest, rel));
  }
  return dest;
}

/** Where each committed transaction of a Data.fs begins, in file order. */
export async function txnStarts(file: string): Promise<number[]> {
  const starts: number[] = [];
  for await (const t of iterateTransactions(file)) starts.push(t.pos);
  return starts;
}

/** The index a full scan of a Data.fs builds, with its committed end. */
export async function referenceIndex(file: string): Promise<{ index: FsIndex; end: number }> {
  const index = new FsIndex();
  let end = 4;
  for await (const t of iterateTransactions(file)) {
    for (const r of t.records) index.set(r.oid, r.pos);
    end = t.end;
  }
  return { index, end };
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
  for (const [i, s] of historySteps()
    .slice(0, opts.steps ?? 6)
    .entries()) {
    fs.copyFileSync(statePath(i + 1), data);
    results.push(await backup({ file: data, repository: repo, now: at(s.stamp), datPrefix: prefix, gzip: opts.gzip, quick: opts.quick, lockWaitMs: 0 }));
  }
  return { repo, data, results };
}

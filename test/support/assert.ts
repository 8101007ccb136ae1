/**
 * Assertions: typed errors (a PloneBackupError of a given code), a restored
 * site's consistency, an index that fits its Data.fs, no hang.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PloneBackupError, blobRelPath, committedEnd, openFileStorage, readIndexFile, readLayout, scanBlobRefs, type ErrorCode } from '../../src/engine/internal';

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

/** Calls `fn`; anything thrown must be a PloneBackupError with one of `codes`. Returns the code or 'ok'. */
export async function typedOrOk(what: string, codes: string[], fn: () => unknown): Promise<string> {
  try {
    await fn();
    return 'ok';
  } catch (e) {
    assert.ok(PloneBackupError.is(e), `${what}: threw a ${(e as Error)?.constructor?.name}: ${(e as Error)?.stack ?? e}`);
    assert.ok(codes.includes(e.code), `${what}: unexpected code ${e.code}: ${e.message}`);
    assert.ok(e.message.length > 0);
    return e.code;
  }
}

/**
 * Runs `fn` and fails when it never finishes (a reader waiting on a FIFO, a
 * parser in a loop). A hang guard, not a speed test: the limit is far above
 * any honest run on a loaded machine. How the cost grows with the input is
 * measured by `npm run bench` (scripts/bench-linear.mjs), as ratios.
 */
export async function noHang<R>(what: string, fn: () => Promise<R> | R): Promise<R> {
  const ms = 30_000;
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms / 1000} s: it hangs`)), ms);
  });
  try {
    return await Promise.race([Promise.resolve().then(fn), limit]);
  } finally {
    clearTimeout(timer);
  }
}

/** The blob files the committed records of a Data.fs reference (relative paths in `layout`). */
export async function referencedBlobs(file: string, layout: 'bushy' | 'lawn' = 'bushy'): Promise<string[]> {
  const st = await openFileStorage(file);
  try {
    const r = await scanBlobRefs(st, 4, st.size);
    return [...new Set(r.refs.map((x) => blobRelPath(x.oid, x.tid, layout)))].sort();
  } finally {
    await st.fh.close();
  }
}

export interface Consistency {
  transactions: number;
  end: number;
  size: number;
  missing: string[];
  referenced: number;
  indexPos?: number;
}

/**
 * What makes a restored site usable: every transaction readable to the end of
 * the file, an index (when there is one) that describes the end, and every
 * blob file a committed record references present in the blob dir.
 */
export async function consistency(file: string, blobDir?: string): Promise<Consistency> {
  const st = await openFileStorage(file);
  let refs;
  try {
    refs = await scanBlobRefs(st, 4, st.size);
  } finally {
    await st.fh.close();
  }
  let missing: string[] = [];
  let referenced = 0;
  if (blobDir) {
    const { layout } = await readLayout(blobDir);
    const rels = [...new Set(refs.refs.map((x) => blobRelPath(x.oid, x.tid, layout)))];
    referenced = rels.length;
    missing = rels.filter((r) => !fs.existsSync(path.join(blobDir, r))).sort();
  }
  let indexPos: number | undefined;
  if (fs.existsSync(`${file}.index`)) indexPos = (await readIndexFile(`${file}.index`)).pos;
  return { transactions: refs.txnCount, end: refs.end, size: st.size, missing, referenced, indexPos };
}

/** What is wrong with a restored site (see `consistency`): none when it is usable. */
export function consistencyProblems(c: Consistency, what: string): string[] {
  const out: string[] = [];
  if (c.end !== c.size) out.push(`${what}: bytes after the last committed transaction (end ${c.end}, size ${c.size})`);
  if (c.missing.length) out.push(`${what}: referenced blob files missing: ${c.missing.join(' ')}`);
  if (c.indexPos !== undefined && c.indexPos !== c.end) out.push(`${what}: the index describes another end (${c.indexPos}, not ${c.end})`);
  return out;
}

/** Asserts that a restored site is usable (see `consistency`). */
export async function assertConsistent(file: string, blobDir?: string, what = file): Promise<void> {
  const problems = consistencyProblems(await consistency(file, blobDir), what);
  assert.deepEqual(problems, [], problems.join('; '));
}

/** The index beside a Data.fs, when there is one, must describe its committed end. */
export async function assertIndexFits(file: string): Promise<void> {
  if (!fs.existsSync(`${file}.index`)) return;
  const { pos } = await readIndexFile(`${file}.index`);
  const { end } = await committedEnd(file);
  assert.ok(pos <= end, `${file}.index describes byte ${pos}, past the committed end ${end}`);
}

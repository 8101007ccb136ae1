/**
 * Shared helpers of the deployment tests: temp folders, sample deployments
 * (buildout layout) written with the engine's SampleSite, a fake clock for
 * backup stamps, directory snapshots (to prove a failing operation changed
 * nothing), blob trees of the ZODB fixtures, the consistency of a restored
 * site, a real held Data.fs.lock, and running the CLI bundle as a child.
 */
import * as assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  SampleSite,
  blobRelPath,
  openFileStorage,
  parseStamp,
  readLayout,
  scanBlobRefs,
  readIndexFile,
  openRestore,
  type Deployment,
  type RestoreOptions,
  type StoragePlan,
} from '../../src/engine/internal';

/** The plan a restore with `opts` would run now (a session opened, its plans read, closed again). */
export async function planOf(dep: Deployment, opts: RestoreOptions = {}): Promise<StoragePlan[]> {
  const session = await openRestore(dep, opts);
  try {
    return session.plans;
  } finally {
    await session.close();
  }
}

/** The repository root (this file compiles to out/test/deploy/helpers.js). */
export const ROOT = path.resolve(__dirname, '..', '..', '..');
export const ENGINE = path.join(ROOT, 'out', 'src', 'engine', 'internal.js');
export const CLI = path.join(ROOT, 'dist', 'cli.js');
export const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'zodb');
export const HISTORY = path.join(FIXTURES, 'history');

export function md5(b: Buffer | string): string {
  return createHash('md5').update(b).digest('hex');
}
export const md5File = (f: string): string => md5(fs.readFileSync(f));

/** A fresh temp folder, removed when the test ends. */
export function tmpDir(t: { after: (fn: () => void | Promise<void>) => void }, tag = 'pb-deploy-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), tag));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A clock for backup stamps: each call is `step` seconds after the previous one. */
export function fakeClock(start = '2026-03-01-10-00-00', step = 60): { now: () => Date; peek: () => Date } {
  let t = parseStamp(start).getTime() - step * 1000;
  return {
    now: () => new Date((t += step * 1000)),
    peek: () => new Date(t),
  };
}

/** A clock that always returns the time of `stamp`. */
export const at = (stamp: string) => () => parseStamp(stamp);

export interface Site {
  root: string;
  varDir: string;
  file: string;
  blobDir: string;
  site: SampleSite;
}

/** A buildout-layout deployment: var/filestorage/Data.fs and var/blobstorage, with some documents and files. */
export async function makeSite(root: string, opts: { docs?: number; files?: number; name?: string } = {}): Promise<Site> {
  const varDir = path.join(root, 'var');
  const name = opts.name ?? 'main';
  const file = path.join(varDir, 'filestorage', name === 'main' ? 'Data.fs' : `${name}.fs`);
  const blobDir = path.join(varDir, name === 'main' ? 'blobstorage' : `blobstorage_${name}`);
  const site = await SampleSite.create({ file, blobDir });
  for (let i = 0; i < (opts.docs ?? 2); i++) await site.addDocument(`${name} document ${i}`);
  for (let i = 0; i < (opts.files ?? 2); i++) await site.uploadFile(`${name}-file${i}.pdf`, content(`${name}-${i}`, 3000 + i * 100));
  return { root, varDir, file, blobDir, site };
}

/** Deterministic bytes for a blob. */
export function content(tag: string, size = 2000): Buffer {
  const b = Buffer.alloc(size);
  const seed = Buffer.from(md5(tag), 'hex');
  for (let i = 0; i < size; i++) b[i] = seed[i % 16] ^ (i & 0xff);
  return b;
}

/** Every file under `dir` (relative name -> md5), symlinks by target, folders marked. */
export function snapshot(dir: string, opts: { skip?: (rel: string) => boolean } = {}): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string, rel: string) => {
    let ents: fs.Dirent[];
    try {
      ents = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const ent of ents) {
      const r = rel ? `${rel}/${ent.name}` : ent.name;
      if (opts.skip?.(r)) continue;
      const p = path.join(d, ent.name);
      if (ent.isSymbolicLink()) out[r] = 'link:' + fs.readlinkSync(p);
      else if (ent.isDirectory()) {
        out[r + '/'] = 'dir';
        walk(p, r);
      } else out[r] = md5(fs.readFileSync(p));
    }
  };
  walk(dir, '');
  return out;
}

/** The .blob files under a blob tree (relative paths, sorted), tmp/ excluded. */
export function blobFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const ent of fs.readdirSync(d, { withFileTypes: true })) {
      const r = rel ? `${rel}/${ent.name}` : ent.name;
      if (!rel && ent.name === 'tmp') continue;
      if (ent.isDirectory()) walk(path.join(d, ent.name), r);
      else if (ent.name.endsWith('.blob')) out.push(r);
    }
  };
  if (fs.existsSync(dir)) walk(dir, '');
  return out.sort();
}

/** Blob file -> md5 of its content. */
export function blobContents(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const rel of blobFiles(dir)) out[rel] = md5File(path.join(dir, rel));
  return out;
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

/**
 * What makes a restored site usable: every transaction readable to the end of
 * the file, an index (when there is one) that describes the end, and every
 * blob file a committed record references present in the blob dir.
 */
export async function consistency(file: string, blobDir?: string): Promise<{ transactions: number; end: number; size: number; missing: string[]; referenced: number; indexPos?: number }> {
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

/** Asserts that a restored site is usable (see `consistency`). */
export async function assertConsistent(file: string, blobDir?: string, what = file): Promise<void> {
  const c = await consistency(file, blobDir);
  assert.equal(c.end, c.size, `${what}: bytes after the last committed transaction`);
  assert.deepEqual(c.missing, [], `${what}: referenced blob files missing`);
  if (c.indexPos !== undefined) assert.equal(c.indexPos, c.end, `${what}: the index describes another end`);
}

/** Asserts that `p` rejects with a PloneBackupError of `code`; returns the error. */
export { rejectsWith } from '../helpers';

/** Copies a file or folder (recursively) and makes the copy writable. */
export { copy } from '../helpers';

// ---------------------------------------------------------------------------
// The ZODB fixtures' history (S1..S6) as collective.recipe.backup saw it

export interface HistoryStep {
  stamp: string;
  state: string;
  size: number;
  md5: string;
  last_tid: string;
  blobs: Record<string, string>;
}

export function historySteps(): HistoryStep[] {
  return (JSON.parse(fs.readFileSync(path.join(HISTORY, 'history.json'), 'utf8')) as { steps: HistoryStep[] }).steps;
}

/**
 * Writes the blob tree present after history step `n` (0-based) to `dest`:
 * the files history.json lists, taken from the fixture's blobstorage or
 * blobstorage.old (where the pack moved the others), checked by md5.
 */
export function fixtureBlobTree(n: number, dest: string): string {
  const step = historySteps()[n];
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

// ---------------------------------------------------------------------------
// Processes

/** Holds a real exclusive lock on `<file>.lock` (util-linux flock), as a running Zope does. Released in t.after. */
export async function holdSiteLock(t: { after: (fn: () => void | Promise<void>) => void }, file: string): Promise<ChildProcess> {
  const lockFile = `${file}.lock`;
  const child = spawn('flock', ['-x', lockFile, 'sleep', '30'], { stdio: 'ignore' });
  t.after(() => {
    child.kill('SIGKILL');
  });
  // Wait until /proc/locks shows a lock on the file's inode.
  for (let i = 0; i < 200; i++) {
    if (fs.existsSync(lockFile)) {
      const ino = fs.statSync(lockFile).ino;
      const locks = fs.readFileSync('/proc/locks', 'utf8');
      if (locks.split('\n').some((l) => l.split(/\s+/).some((f) => /^[0-9a-f]+:[0-9a-f]+:\d+$/.test(f) && Number(f.split(':')[2]) === ino))) return child;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('flock never took the lock');
}

export interface CliRun {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node dist/cli.js ...args` without a terminal and without stdin. */
export function runCli(args: string[], opts: { cwd?: string; input?: string } = {}): CliRun {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    cwd: opts.cwd ?? os.tmpdir(),
    input: opts.input ?? '',
    encoding: 'utf8',
    env: { ...process.env, PLONE_BACKUP_DEBUG: '' },
    timeout: 60_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Recursively lists names under `dir` that look like our temp files (nothing may be left behind). */
export function tempLeftovers(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    let ents: fs.Dirent[];
    try {
      ents = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of ents) {
      const p = path.join(d, e.name);
      if (e.name.startsWith('.plone-backup-') && e.name !== '.plone-backup-cache.json') out.push(p);
      if (e.isDirectory() && !e.isSymbolicLink()) walk(p);
    }
  };
  walk(dir);
  return out;
}

// ---------------------------------------------------------------------------
// A writer in another process

/**
 * The writer: a SampleSite in the buildout layout under ROOT that keeps
 * committing documents, new files and new revisions of files; at times it
 * pauses between vote and finish (the transaction is then 'c', its blob
 * already in place). A line "pack" on its stdin makes it pack after its next
 * commit (Data.fs renamed, old blob revisions removed). It stops when its
 * stdin closes and prints its counts as JSON.
 */
const WRITER_SOURCE = (engine: string) => `
const E = require(${JSON.stringify(engine)});
const path = require('node:path');
const [root, seedArg] = process.argv.slice(2);
let seed = Number(seedArg) >>> 0;
const rand = (n) => {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return (seed >>> 8) % n;
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const blob = (n, size) => {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = (i * 31 + n * 7) & 0xff;
  return b;
};
let stop = false;
let packs = 0;
process.stdin.on('data', (d) => { packs += String(d).split('pack').length - 1; });
process.stdin.on('end', () => { stop = true; });
(async () => {
  const file = path.join(root, 'var', 'filestorage', 'Data.fs');
  const site = await E.SampleSite.create({ file, blobDir: path.join(root, 'var', 'blobstorage') });
  const w = site.writer;
  const files = [];
  const c = { commits: 0, blobs: 0, paused: 0, packs: 0, removedBlobs: 0 };
  for (let i = 0; i < 3; i++) { files.push(await site.uploadFile('f' + i, blob(i, 1500))); c.commits++; c.blobs++; }
  process.stdout.write('ready\\n');
  let n = 0;
  while (!stop) {
    n++;
    const r = rand(10);
    if (r < 4) { await site.addDocument('doc ' + n); }
    else if (r < 5) { files.push(await site.uploadFile('new ' + n, blob(n, 500 + rand(3000)))); c.blobs++; }
    else if (r < 8) { await site.uploadFile('again ' + n, blob(n, 500 + rand(3000)), files[rand(files.length)]); c.blobs++; }
    else {
      // vote, a pause with the transaction 'c' and its blob in place, then finish
      const oid = files[rand(files.length)];
      await w.vote({ user: '/ slow', description: 'slow upload ' + n, records: [{ oid, data: E.BLOB_PICKLE, blob: blob(n, 2000) }] });
      c.paused++;
      await sleep(1 + rand(8));
      await w.finish();
      c.blobs++;
    }
    c.commits++;
    if (packs > 0) {
      packs--;
      const p = await w.pack();
      c.packs++;
      c.removedBlobs += p.removedBlobs;
    }
    await sleep(3 + rand(8));
  }
  await site.close();
  process.stdout.write(JSON.stringify(c) + '\\n');
})().catch((e) => { process.stderr.write(String(e && e.stack || e)); process.exit(3); });
`;

export interface WriterStats {
  commits: number;
  blobs: number;
  paused: number;
  packs: number;
  removedBlobs: number;
}

/** Starts the writer on a new site under `root`; resolves once the site exists. */
export async function startWriter(
  t: { after: (fn: () => void | Promise<void>) => void },
  root: string,
  opts: { seed?: number } = {},
): Promise<{ stop: () => Promise<WriterStats>; pack: () => void; child: ChildProcess }> {
  const scriptDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pb-writer-'));
  const script = path.join(scriptDir, 'writer.js');
  fs.writeFileSync(script, WRITER_SOURCE(ENGINE));
  const child = spawn(process.execPath, [script, root, String(opts.seed ?? 1)], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  t.after(() => {
    child.kill('SIGKILL');
    fs.rmSync(scriptDir, { recursive: true, force: true });
  });
  for (let i = 0; !out.includes('ready'); i++) {
    if (child.exitCode !== null || i > 400) throw new Error(`the writer did not start: ${err}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    child,
    pack() {
      child.stdin!.write('pack\n');
    },
    async stop() {
      child.stdin!.end();
      const code = await exited;
      assert.equal(code, 0, `the writer failed: ${err}`);
      return JSON.parse(out.trim().split('\n').pop()!) as WriterStats;
    },
  };
}

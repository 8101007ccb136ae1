/**
 * Files and folders: hashes, temp folders that clean up after themselves,
 * copies, directory snapshots (to prove that a failing operation changed
 * nothing), blob trees, leftover temp files, deterministic blob content.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { nth, xorByte } from './must';

/** What a test context offers the helpers: node:test's TestContext (or a suite's). */
export interface TestHooks {
  after: (fn: () => void | Promise<void>) => void;
  diagnostic?: (message: string) => void;
}

export function md5(b: Buffer | string): string {
  return createHash('md5').update(b).digest('hex');
}

export const md5File = (f: string): string => md5(fs.readFileSync(f));

/** A fresh temp folder, removed when the test (or suite) ends. */
export function tmpDir(t: TestHooks, tag = 'pb-test-'): string {
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

/** Copies a prepared folder as it is (symlinks kept, mtimes kept). */
export function cloneDir(src: string, dest: string): void {
  fs.cpSync(src, dest, { recursive: true, verbatimSymlinks: true, preserveTimestamps: true });
}

/**
 * Every file under `dir` (relative name -> md5), symlinks by target, folders marked; a missing folder is {}.
 * The run log (`.plone-backup.runs.jsonl*`), which every CLI run appends to, failed ones too, is left out unless `runLog`.
 */
export function snapshot(dir: string, opts: { skip?: (rel: string) => boolean; runLog?: boolean } = {}): Record<string, string> {
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
      if (!opts.runLog && ent.name.startsWith('.plone-backup.runs.jsonl')) continue;
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

/** Names of a folder, sorted. */
export const names = (dir: string): string[] => fs.readdirSync(dir).sort();

/** Flips one bit of a byte of a file in place. */
export function flipByte(file: string, pos: number, mask = 0x01): void {
  const b = fs.readFileSync(file);
  xorByte(b, pos, mask);
  fs.writeFileSync(file, b);
}

/** Deterministic bytes for a blob. */
export function content(tag: string, size = 2000): Buffer {
  const b = Buffer.alloc(size);
  const seed = Buffer.from(md5(tag), 'hex');
  for (let i = 0; i < size; i++) b[i] = nth(seed, i % 16) ^ (i & 0xff);
  return b;
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

/** The .blob files under a blob tree as absolute paths (sorted), tmp/ excluded. */
export const blobPaths = (dir: string): string[] => blobFiles(dir).map((r) => path.join(dir, r));

/** Blob file -> md5 of its content. */
export function blobContents(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const rel of blobFiles(dir)) out[rel] = md5File(path.join(dir, rel));
  return out;
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

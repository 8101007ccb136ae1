/**
 * A repozo repository on disk: the names of its files, the `.dat` lines, and
 * the chains of pieces (a full backup and the incrementals after it).
 *
 *   2026-01-01-10-00-00.fs        full backup: bytes [0, end) of Data.fs
 *   2026-01-02-10-00-00.deltafs   incremental: bytes [start, end)
 *   .fsz / .deltafsz              the same, gzip-compressed
 *   <full stamp>.dat              "PATH START END MD5" per piece of the chain
 *   <stamp>.index                 Data.fs.index of the state after that piece
 *
 * repozo compares stamps as strings; so do we.
 */

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { PloneBackupError } from '../base/errors';
import { READ_CAPS, readFileCapped } from '../base/io';

const DATA_FILE_RE = /^(\d{4}(?:-\d\d){5})\.(deltafsz|deltafs|fsz|fs)$/;

export interface RepoFile {
  name: string;
  stamp: string;
  ext: 'fs' | 'fsz' | 'deltafs' | 'deltafsz';
  full: boolean;
  gzip: boolean;
}

/** Parses a data file name as repozo's is_data_file matches it. */
export function parseDataFileName(name: string): RepoFile | undefined {
  const m = DATA_FILE_RE.exec(name);
  if (!m) return undefined;
  const ext = m[2] as RepoFile['ext'];
  return { name, stamp: m[1]!, ext, full: ext === 'fs' || ext === 'fsz', gzip: ext.endsWith('z') };
}

export function pieceFileName(stamp: string, full: boolean, gzip: boolean): string {
  return `${stamp}.${full ? 'fs' : 'deltafs'}${gzip ? 'z' : ''}`;
}

/** Python's os.path.join(a, b) for a relative b: what repozo writes into .dat lines. */
export function pyJoin(a: string, b: string): string {
  if (a === '' || a.endsWith('/')) return a + b;
  return `${a}/${b}`;
}

export interface RepositoryListing {
  dir: string;
  /** Data files, in name (= time) order. */
  files: RepoFile[];
  /** Every name in the folder. */
  names: Set<string>;
}

export async function listRepository(dir: string): Promise<RepositoryListing> {
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new PloneBackupError('REPO_MISSING', `The backup repository ${dir} does not exist.`, {
        path: dir,
        hint: 'Create the folder or pass the right one with -r.',
      });
    }
    throw e;
  }
  const files = names
    .map(parseDataFileName)
    .filter((f): f is RepoFile => f !== undefined)
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { dir, files, names: new Set(names) };
}

/**
 * repozo's find_files: the newest full backup whose stamp <= `when`, and the
 * incrementals after it up to `when`, oldest first. `when` undefined: no limit.
 */
export function findChain(files: RepoFile[], when?: string): RepoFile[] {
  const needed: RepoFile[] = [];
  for (let i = files.length - 1; i >= 0; i--) {
    const f = files[i]!;
    if (when === undefined || f.stamp <= when) {
      needed.push(f);
      if (f.full) break;
    }
  }
  needed.reverse();
  // A chain must start with a full backup; incrementals with no full before them restore nothing.
  return needed.length && needed[0]!.full ? needed : [];
}

/** All chains of a repository, oldest first (each: a full and its incrementals). */
export function allChains(files: RepoFile[]): RepoFile[][] {
  const chains: RepoFile[][] = [];
  for (const f of files) {
    if (f.full) chains.push([f]);
    else if (chains.length) chains[chains.length - 1]!.push(f);
  }
  return chains;
}

export const datName = (fullStamp: string) => `${fullStamp}.dat`;
export const indexName = (stamp: string) => `${stamp}.index`;

// ---------------------------------------------------------------------------
// .dat

export interface DatLine {
  /** The path as repozo wrote it (relative to where it ran); match pieces by base name. */
  path: string;
  start: number;
  end: number;
  md5: string;
}

export function formatDatLine(l: DatLine): string {
  return `${l.path} ${l.start} ${l.end} ${l.md5}\n`;
}

/** Parses a .dat file; any line that is not "PATH START END MD5" is a DAT_BAD error naming the line. */
export function parseDat(text: string, file = '.dat'): DatLine[] {
  const lines: DatLine[] = [];
  const raw = text.split('\n');
  if (raw[raw.length - 1] === '') raw.pop();
  raw.forEach((line, i) => {
    const bad = (why: string): never => {
      throw new PloneBackupError('DAT_BAD', `${file} line ${i + 1} is garbled: ${why}.`, {
        path: file,
        position: i + 1,
        hint: 'Restore the .dat from another copy or make a new full backup (-F).',
      });
    };
    const fields = line.trim().split(/\s+/);
    if (fields.length !== 4 || fields[0] === '') bad(`expected "PATH START END MD5", found "${line.slice(0, 80)}"`);
    const [p, s, e, m] = fields as [string, string, string, string];
    if (!/^\d{1,16}$/.test(s) || !/^\d{1,16}$/.test(e)) bad('START and END must be whole numbers');
    const start = Number(s);
    const end = Number(e);
    if (end < start) bad('END is before START');
    if (!/^[0-9a-f]{32}$/.test(m)) bad('MD5 must be 32 hex digits');
    if (!parseDataFileName(path.basename(p))) bad(`"${p}" does not name a backup piece`);
    lines.push({ path: p, start, end, md5: m });
  });
  return lines;
}

/**
 * Reads and parses a .dat; undefined when there is none. Read as hostile
 * input (a regular file of at most READ_CAPS.dat, never waiting on a FIFO):
 * anything else in its place is DAT_BAD, like a garbled one.
 */
export async function readDat(file: string): Promise<DatLine[] | undefined> {
  let text: string;
  try {
    text = await readDatText(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  return parseDat(text, file);
}

/** The text of a .dat, read with readFileCapped; TOO_LARGE becomes DAT_BAD. ENOENT passes through. */
export async function readDatText(file: string): Promise<string> {
  try {
    return (await readFileCapped(file, READ_CAPS.dat, { what: 'The .dat' })).toString('latin1');
  } catch (e) {
    if (PloneBackupError.is(e, 'TOO_LARGE')) {
      throw new PloneBackupError('DAT_BAD', e.message, { path: file, hint: 'Move it away and make a new full backup (-F).', cause: e });
    }
    throw e;
  }
}

/** The .dat line of each piece of a chain (matched by base name); undefined where absent. */
export function datLinesFor(chain: RepoFile[], lines: DatLine[]): (DatLine | undefined)[] {
  const byName = new Map(lines.map((l) => [path.basename(l.path), l]));
  return chain.map((f) => byName.get(f.name));
}

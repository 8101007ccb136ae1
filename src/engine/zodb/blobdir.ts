/**
 * The blob directory of a ZODB BlobStorage: its two layouts, and the mapping
 * between (oid, tid) and a blob file's relative path, in both directions.
 *
 *   bushy: 0x00/0x00/0x00/0x00/0x00/0x00/0x00/0x0a/0x0405e91c6aaaaaaa.blob
 *   lawn:  0x0a/0x0405e91c6aaaaaaa.blob
 *
 * `.layout` names the layout; without it ZODB takes bushy for an empty folder
 * and lawn for a populated one. `tmp/` holds uncommitted files.
 */

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { PloneBackupError, checkAbort } from '../base/errors';
import { READ_CAPS, readFileCapped } from '../base/io';
import { idRepr } from './tid';

export type BlobLayout = 'bushy' | 'lawn';

export const LAYOUT_FILE = '.layout';
export const BLOB_TMP_DIR = 'tmp';

/** The relative folder of an oid's blob files (with '/' separators). */
export function oidDir(oid: Buffer, layout: BlobLayout): string {
  if (layout === 'lawn') return idRepr(oid);
  const parts: string[] = [];
  for (let i = 0; i < 8; i++) parts.push('0x' + oid[i]!.toString(16).padStart(2, '0'));
  return parts.join('/');
}

/** The relative path of the blob file of revision (oid, tid). */
export function blobRelPath(oid: Buffer, tid: Buffer, layout: BlobLayout): string {
  return `${oidDir(oid, layout)}/${idRepr(tid)}.blob`;
}

function reprToId(repr: string): Buffer | undefined {
  // Only the canonical repr (leading zero bytes stripped): ZODB never looks a file up by another name.
  if (!/^0x[0-9a-f]{2,16}$/.test(repr) || repr.length % 2 !== 0 || (repr.startsWith('0x00') && repr !== '0x00')) return undefined;
  return Buffer.from(repr.slice(2).padStart(16, '0'), 'hex');
}

/**
 * Parses a relative blob path back into (oid, tid), or undefined when it is not
 * one (a `..`, an absolute path or any other name is never a blob path).
 */
export function parseBlobRelPath(rel: string, layout: BlobLayout): { oid: Buffer; tid: Buffer } | undefined {
  const parts = rel.split(/[\\/]/);
  const file = parts.pop();
  if (!file || !file.endsWith('.blob')) return undefined;
  const tid = reprToId(file.slice(0, -5));
  if (!tid) return undefined;
  if (layout === 'lawn') {
    if (parts.length !== 1) return undefined;
    const oid = reprToId(parts[0]!);
    return oid ? { oid, tid } : undefined;
  }
  if (parts.length !== 8) return undefined;
  const oid = Buffer.alloc(8);
  for (let i = 0; i < 8; i++) {
    if (!/^0x[0-9a-f]{2}$/.test(parts[i]!)) return undefined;
    oid[i] = parseInt(parts[i]!.slice(2), 16);
  }
  return { oid, tid };
}

/**
 * Whether `rel` is exactly the path ZODB gives some blob file in `layout`:
 * it parses as one and prints back the same. Anything else read from disk
 * (a manifest entry such as `../../x`, `/etc/x`, `0x00//0x01`) is not a blob
 * path, and so never joined to a folder.
 */
export function isBlobRelPath(rel: string, layout: BlobLayout): boolean {
  const id = parseBlobRelPath(rel, layout);
  return id !== undefined && blobRelPath(id.oid, id.tid, layout) === rel;
}

/** Reads the layout of a blob dir, as ZODB decides it. */
export async function readLayout(blobDir: string): Promise<{ layout: BlobLayout; marked: boolean }> {
  try {
    // A few bytes at most; a FIFO or /dev/zero there is refused, never waited on or read whole.
    const text = (await readFileCapped(path.join(blobDir, LAYOUT_FILE), READ_CAPS.small, { what: 'The blob layout file' })).toString('utf8').trim();
    if (text !== 'bushy' && text !== 'lawn') {
      throw new PloneBackupError('IO', `${path.join(blobDir, LAYOUT_FILE)} names an unknown blob layout "${text}".`, {
        path: path.join(blobDir, LAYOUT_FILE),
        hint: 'It must hold "bushy" or "lawn".',
      });
    }
    return { layout: text, marked: true };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  let entries: string[] = [];
  try {
    entries = (await fsp.readdir(blobDir)).filter((n) => n !== BLOB_TMP_DIR && !n.startsWith('.'));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  return { layout: entries.length === 0 ? 'bushy' : 'lawn', marked: false };
}

export interface BlobFile {
  /** Relative path with '/' separators. */
  rel: string;
  oid: Buffer;
  tid: Buffer;
  size: number;
}

/**
 * Lists every committed-looking blob file under a blob dir (tmp/ and the
 * layout marker are skipped; files that are no blob paths are returned in
 * `strays`). Symbolic links (and devices, sockets, FIFOs) are never followed
 * nor taken for blob files: they are returned in `links`, for the caller to
 * refuse or report.
 */
export async function listBlobFiles(blobDir: string, layout: BlobLayout): Promise<{ files: BlobFile[]; strays: string[]; links: string[] }> {
  const files: BlobFile[] = [];
  const strays: string[] = [];
  const links: string[] = [];
  async function walk(dir: string, rel: string): Promise<void> {
    let entries: import('node:fs').Dirent[];
    try {
      entries = await fsp.readdir(dir, { withFileTypes: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' && rel === '') return;
      throw e;
    }
    for (const ent of entries) {
      const r = rel ? `${rel}/${ent.name}` : ent.name;
      if (rel === '' && (ent.name === BLOB_TMP_DIR || ent.name === LAYOUT_FILE)) continue;
      if (ent.isDirectory()) await walk(path.join(dir, ent.name), r);
      else if (ent.isFile()) {
        const id = parseBlobRelPath(r, layout);
        if (id) {
          const st = await fsp.lstat(path.join(dir, ent.name));
          if (st.isFile()) files.push({ rel: r, oid: id.oid, tid: id.tid, size: st.size });
          else links.push(r); // swapped for something else since readdir
        } else strays.push(r);
      } else links.push(r);
    }
  }
  await walk(blobDir, '');
  files.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
  return { files, strays, links };
}

/** A symbolic link or another non-regular entry where a blob file or its folder belongs. */
export function notABlobFile(file: string, what: 'link' | 'other'): PloneBackupError {
  return new PloneBackupError(
    'UNSAFE',
    what === 'link'
      ? `${file} is a symbolic link where a blob file or its folder belongs; links are never followed, so nothing was copied.`
      : `${file} is not a regular file or folder where a blob file or its folder belongs; nothing was copied.`,
    { path: file, hint: 'Replace it by the real file (ZODB never makes links), or remove it; `plone-backup check` lists such entries.' },
  );
}

/**
 * Looks up the blob files `rels` (relative blob paths, checked with
 * isBlobRelPath by the caller) under `root` without following any link:
 * every folder on the way below `root` and the file itself are lstat'ed, once
 * each, a level at a time in parallel. A link or any non-regular entry
 * throws UNSAFE naming it (a blob tree ZODB wrote has none, and following one
 * would copy a file from outside the storage into a backup, or a link into
 * the live site). Returns the files that do not exist, sorted, and the sizes
 * of those that do. The one answer to "which blob files are missing".
 */
export async function statBlobFiles(root: string, rels: Iterable<string>, signal?: AbortSignal): Promise<{ missing: string[]; sizes: Map<string, number> }> {
  const files = [...new Set(rels)];
  // Every folder between root and the files, by depth.
  const byDepth: string[][] = [];
  const seen = new Set<string>();
  for (const r of files) {
    for (let d = path.posix.dirname(r); d !== '.' && !seen.has(d); d = path.posix.dirname(d)) {
      seen.add(d);
      const depth = d.split('/').length - 1;
      (byDepth[depth] ??= []).push(d);
    }
  }
  const absent = new Set<string>();
  const isAbsent = (rel: string) => {
    for (let d = path.posix.dirname(rel); d !== '.'; d = path.posix.dirname(d)) if (absent.has(d)) return true;
    return false;
  };
  const look = async (rel: string, dir: boolean): Promise<number | undefined> => {
    if (isAbsent(rel)) return undefined;
    const full = path.join(root, rel);
    let st;
    try {
      st = await fsp.lstat(full);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      throw e;
    }
    if (st.isSymbolicLink()) throw notABlobFile(full, 'link');
    if (dir ? !st.isDirectory() : !st.isFile()) throw notABlobFile(full, 'other');
    return st.size;
  };
  for (const level of byDepth) {
    if (!level) continue;
    await eachAtMost(
      level,
      16,
      async (d) => {
        if ((await look(d, true)) === undefined) absent.add(d);
      },
      signal,
    );
  }
  const missing: string[] = [];
  const sizes = new Map<string, number>();
  await eachAtMost(
    files,
    16,
    async (r) => {
      const size = await look(r, false);
      if (size === undefined) missing.push(r);
      else sizes.set(r, size);
    },
    signal,
  );
  missing.sort();
  return { missing, sizes };
}

/** Runs `fn` over `items` with at most `n` at once (libuv has four threads; keep them busy); the first failure wins. */
export async function eachAtMost<T>(items: T[], n: number, fn: (t: T) => Promise<void>, signal?: AbortSignal): Promise<void> {
  let i = 0;
  let failed: unknown;
  const worker = async () => {
    while (i < items.length && failed === undefined) {
      const t = items[i++]!;
      try {
        if (signal?.aborted) checkAbort(signal);
        await fn(t);
      } catch (e) {
        failed ??= e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  if (failed !== undefined) throw failed;
}

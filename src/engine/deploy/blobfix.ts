/**
 * Missing blob files, cheaply: what an editor needs to notice a deleted blob
 * file without rescanning Data.fs or walking the blob tree, and to say which
 * backup can put it back.
 *
 * - `recentBlobs`: the blob files of the most recent transactions, from what
 *   the last live check (`LiveScanCache`) learned: no Data.fs read.
 * - `restatRecentBlobs`: looks at exactly those files (one lstat each) and
 *   reports the missing ones as `check` does (BLOB_MISSING), unless Data.fs
 *   changed since that scan (then a full live check is due instead).
 * - `sameStateGenerations` (pure) and `findBlobSource`: the generations whose
 *   filestorage state is the live one, newest first, and the first of them
 *   that holds the missing files. A restore to such a generation is the
 *   "unchanged" restore: Data.fs stays as it is and only missing blob files
 *   are added. An older generation would replace Data.fs (a full restore), so
 *   it is never a source here.
 */

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { blobRelPath, readLayout } from '../zodb/blobdir';
import { blobMissing, type Finding, type LiveScanCache } from './check';
import { KIND_ORDER, type Kind } from './kinds';
import type { StorageView } from './list';
import type { StorageConfig } from './deployment';

export interface RecentBlob {
  /** Relative to the blobstorage. */
  rel: string;
  path: string;
  oid: Buffer;
  tid: Buffer;
}

export interface RecentBlobs {
  storage: string;
  /** The Data.fs as it was scanned: a changed one makes these stale. */
  file: string;
  ino: number;
  size: number;
  /** Newest first. */
  blobs: RecentBlob[];
}

/** The live filestorage state the last scan saw: its committed end and last transaction (hex). */
export interface LiveState {
  end: number;
  lastTid?: string;
}

/** The last `max` items with distinct keys, the last one first. */
export function lastDistinct<T>(items: readonly T[], key: (t: T) => string, max: number): T[] {
  const seen = new Set<string>();
  const out: T[] = [];
  for (let i = items.length - 1; i >= 0 && out.length < max; i--) {
    const k = key(items[i]!);
    if (seen.has(k)) continue;
    seen.add(k);
    out.push(items[i]!);
  }
  return out;
}

/** The folders holding these blob files, in their order, at most `max`. */
export function blobFolders(blobs: readonly RecentBlob[], max: number): string[] {
  return lastDistinct([...blobs].reverse(), (b) => path.dirname(b.path), max).map((b) => path.dirname(b.path));
}

/** The state the last live check of `s` scanned, if one did. */
export function liveStateOf(s: StorageConfig, cache: LiveScanCache): LiveState | undefined {
  const c = cache.files.get(s.file);
  return c ? { end: c.end, lastTid: c.lastTid } : undefined;
}

/** The blob files of the newest transactions (at most `max`), from the last live check's scan. */
export async function recentBlobs(s: StorageConfig, cache: LiveScanCache, max: number): Promise<RecentBlobs | undefined> {
  const c = cache.files.get(s.file);
  if (!c || c.size === undefined || !s.blobDir) return undefined;
  const { layout } = await readLayout(s.blobDir);
  const refs = lastDistinct(c.refs, (r) => `${r.oid.toString('hex')}/${r.tid.toString('hex')}`, max);
  const blobs = refs.map((r) => {
    const rel = blobRelPath(r.oid, r.tid, layout);
    return { rel, path: path.join(s.blobDir!, rel), oid: r.oid, tid: r.tid };
  });
  return { storage: s.name, file: s.file, ino: c.ino, size: c.size, blobs };
}

export type Restat = { changed: true } | { changed: false; missing: Finding[]; present: string[] };

/**
 * One lstat per recent blob file: the missing ones as BLOB_MISSING findings,
 * the paths still there. `changed` when Data.fs is not the file scanned
 * (written, packed or replaced since): the recent list is stale then.
 */
export async function restatRecentBlobs(s: StorageConfig, recent: RecentBlobs): Promise<Restat> {
  const st = await fsp.stat(s.file).catch(() => undefined);
  if (!st || st.ino !== recent.ino || st.size !== recent.size) return { changed: true };
  const missing: Finding[] = [];
  const present: string[] = [];
  for (const b of recent.blobs) {
    const ok = await fsp.lstat(b.path).then(
      (x) => x.isFile(),
      (e: NodeJS.ErrnoException) => (e.code === 'ENOENT' || e.code === 'ENOTDIR' ? false : true),
    );
    if (ok) present.push(b.path);
    else missing.push(blobMissing(s, b.oid, b.tid, b.rel));
  }
  return { changed: false, missing, present };
}

export interface BlobSource {
  storage: string;
  kind: Kind;
  stamp: string;
  /** The blob generation folder. */
  generation: string;
  /** Its blob tree (the generation folder's blobstorage). */
  content: string;
}

/**
 * The dir generations whose filestorage state is `live` (same committed end,
 * same last transaction), newest first (at the same stamp: backups before
 * snapshots). Archives (zip backups) are left out: what they hold is known
 * only by reading them.
 */
export function sameStateGenerations(view: StorageView, live: LiveState): BlobSource[] {
  if (!view.blobDir || !live.lastTid) return [];
  const base = path.basename(view.blobDir);
  const out: BlobSource[] = [];
  for (const g of view.groups) {
    for (const c of g.chains) {
      for (const p of [c.full, ...c.incrementals]) {
        if (p.end !== live.end || p.lastTid !== live.lastTid || p.problem) continue;
        if ((p.blob.status !== 'match' && p.blob.status !== 'mismatch') || !p.blob.path || /\.tar(\.gz)?$/.test(p.blob.path)) continue;
        out.push({ storage: view.storage, kind: g.kind, stamp: p.stamp, generation: p.blob.path, content: p.blob.content ?? path.join(p.blob.path, base) });
      }
    }
  }
  return out.sort((a, b) => (a.stamp !== b.stamp ? (a.stamp < b.stamp ? 1 : -1) : KIND_ORDER.indexOf(a.kind) - KIND_ORDER.indexOf(b.kind)));
}

/**
 * The newest generation of the live state that holds every one of `rels`
 * (relative blob paths) as a regular file; undefined when none does.
 */
export async function findBlobSource(view: StorageView, live: LiveState, rels: readonly string[]): Promise<BlobSource | undefined> {
  for (const cand of sameStateGenerations(view, live)) {
    let all = true;
    for (const rel of rels) {
      const st = await fsp.lstat(path.join(cand.content, rel)).catch(() => undefined);
      if (!st?.isFile()) {
        all = false;
        break;
      }
    }
    if (all) return cand;
  }
  return undefined;
}

/**
 * The push index: what a push knows the remote holds, kept beside the
 * storage's backups (`.plone-backup.remote-<hash of the URL>.json`, one per
 * remote and kind), so that a push after 10 new blob files sends those and
 * asks the server almost nothing (push.ts). It is a cache: absent, garbled
 * or foreign, it is rebuilt from the remote's manifests, and an entry is
 * never trusted past what the remote still lists (push.ts drops the index
 * when the remote lacks a generation it names).
 *
 * On disk (version 2), one JSON object:
 *
 *     {"version":2,"url":"s3://…","gens":["2026-…",…],
 *      "packs":["<sha256 of pack 0>",…],
 *      "objects":{"<key>":[size,"<sha256>"] | [size,"<sha256>",packNo,offset],…}}
 *
 * A blob file kept in a pack names its pack by number in `packs`: written
 * in every entry (version 1), the 64-character pack id made up a third of
 * the file, and a push reads and writes the whole file (4 MB for 20,000
 * blob files in version 1). Version 1 files are still read.
 *
 * "Dirty" (a push was writing objects the index does not name yet, and may
 * have been interrupted) is a separate empty file `<index>.dirty`, made
 * before the first object is sent and removed after the index that names
 * them all is written: marking the start of a push then costs a tiny file,
 * not a rewrite of the whole index. A version 1 index says it in a field.
 */

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { fileLayer, READ_CAPS, readFileCapped, writeFileAtomic } from '../base/io';

/** Remote key → [size, sha256]; a blob file in a pack: [size, sha256, pack id, offset]. */
export type IndexEntry = [number, string] | [number, string, string, number];

export interface PushIndex {
  url: string;
  /** An unfinished push may have written objects the index does not name. */
  dirty: boolean;
  gens: string[];
  objects: Record<string, IndexEntry>;
}

const PACK_ID = /^[0-9a-f]{64}$/;

export const emptyPushIndex = (url: string, dirty = false): PushIndex => ({ url, dirty, gens: [], objects: {} });

const markerOf = (file: string) => `${file}.dirty`;

/** Reads the index of `url` at `file`; an empty one when it is absent, garbled, foreign or another remote's. */
export async function loadPushIndex(file: string, url: string): Promise<PushIndex> {
  const marked = fsp.lstat(markerOf(file)).then(
    () => true,
    () => false,
  );
  let o: {
    version?: unknown;
    url?: unknown;
    dirty?: unknown;
    gens?: unknown;
    packs?: unknown;
    objects?: unknown;
  } | null;
  try {
    o = JSON.parse((await readFileCapped(file, READ_CAPS.manifest, { noFollow: true })).toString('utf8')) as typeof o;
  } catch {
    // Absent, garbled or foreign: it only costs a look at the remote's manifests. A marker
    // left beside a lost index still says objects may be there that nothing names.
    return emptyPushIndex(url, await marked);
  }
  const dirty = (await marked) || o?.dirty === true;
  if (!o || o.url !== url || !Array.isArray(o.gens) || !o.gens.every((g) => typeof g === 'string')) return emptyPushIndex(url, dirty);
  if (typeof o.objects !== 'object' || o.objects === null || Array.isArray(o.objects)) return emptyPushIndex(url, dirty);
  const objects = o.objects as Record<string, unknown[]>;
  if (o.version === 1) return { url, dirty, gens: o.gens as string[], objects: objects as Record<string, IndexEntry> };
  if (o.version !== 2 || !Array.isArray(o.packs) || !o.packs.every((p) => typeof p === 'string' && PACK_ID.test(p))) return emptyPushIndex(url, dirty);
  const packs = o.packs as string[];
  for (const key of Object.keys(objects)) {
    const e = objects[key];
    if (!Array.isArray(e)) return emptyPushIndex(url, dirty);
    if (e.length === 4) {
      const id = typeof e[2] === 'number' ? packs[e[2]] : undefined;
      // A pack number that names no pack: the file was not written by us; start again.
      if (id === undefined) return emptyPushIndex(url, dirty);
      e[2] = id;
    }
  }
  return { url, dirty, gens: o.gens as string[], objects: objects as Record<string, IndexEntry> };
}

/**
 * Writes the index (temp, fsync, rename). A dirty index keeps (or gets) its
 * marker; a clean one is written first and its marker removed after, so a
 * crash in between leaves it dirty, never clean too early.
 */
export async function savePushIndex(file: string, ix: PushIndex): Promise<void> {
  await fileLayer.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  if (ix.dirty) await markPushIndexDirty(file);
  const packNo = new Map<string, number>();
  const objects: Record<string, [number, string] | [number, string, number, number]> = {};
  for (const key of Object.keys(ix.objects)) {
    const e = ix.objects[key]!;
    if (e.length === 2) objects[key] = e;
    else {
      let n = packNo.get(e[2]);
      if (n === undefined) packNo.set(e[2], (n = packNo.size));
      objects[key] = [e[0], e[1], n, e[3]];
    }
  }
  await writeFileAtomic(file, JSON.stringify({ version: 2, url: ix.url, gens: ix.gens, packs: [...packNo.keys()], objects }));
  if (!ix.dirty) await fileLayer.rm(markerOf(file), { force: true });
}

/** Says that a push starts writing objects the index does not name yet (an empty marker file, fsynced). */
export async function markPushIndexDirty(file: string): Promise<void> {
  const marker = markerOf(file);
  if (await fsp.lstat(marker).catch(() => undefined)) return;
  await fileLayer.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  await writeFileAtomic(marker, '');
}

/**
 * After a forget: the generations it deleted leave the index, and so does
 * every object no kept generation names (`named`: their keys; undefined
 * when objects were left alone). An index that is not there stays absent.
 */
export async function prunePushIndex(file: string, forgotten: string[], named?: Set<string>): Promise<void> {
  if (!(await fsp.lstat(file).catch(() => undefined))?.isFile()) return;
  const raw = (await readFileCapped(file, READ_CAPS.manifest, { noFollow: true }).catch(() => undefined))?.toString('utf8');
  let url: unknown;
  try {
    url = (JSON.parse(raw ?? 'null') as { url?: unknown } | null)?.url;
  } catch {
    url = undefined;
  }
  if (typeof url !== 'string') return;
  const ix = await loadPushIndex(file, url);
  const gone = new Set(forgotten);
  ix.gens = ix.gens.filter((g) => !gone.has(g));
  if (named) for (const k of Object.keys(ix.objects)) if (!named.has(k)) delete ix.objects[k];
  await savePushIndex(file, ix);
}

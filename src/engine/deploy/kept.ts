/**
 * What restores leave behind, and undoing the last one.
 *
 * A restore keeps the state it replaced beside the live files (base/keep.ts):
 * `Data.fs.before-restore-<stamp>` with its `.index`, and
 * `blobstorage.before-restore-<stamp>` (a tree of hard links, mostly sharing
 * the live files' blocks). Here they are listed per restore (one stamp, every
 * storage), deleted on request, and put back: "Undo Last Restore" is a
 * restore from the newest kept state through the same restore session as any
 * other (locks, running-site refusal, build beside, swap), which itself keeps
 * the state it replaces, so an undo can be undone. The kept copies it used
 * are removed once it is done.
 *
 * Only names of our pattern right beside the storage's Data.fs and
 * blobstorage count; they are examined with lstat and never followed.
 *
 * `liveGenerations` says which backup the live Data.fs equals: the one whose
 * piece ends where the live file ends, with the same last transaction (a few
 * bytes read at the end of Data.fs, not a walk).
 */

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { PloneBackupError } from '../base/errors';
import { KEPT_INFIX } from '../base/keep';
import { fileLayer } from '../base/io';
import type { OperationOptions } from '../base/progress';
import { txnEndingAt } from '../zodb/filestorage';
import { isStamp } from '../zodb/tid';
import type { Deployment } from './deployment';
import type { StorageView } from './list';
import { openRestore, type StorageRestoreResult } from './restore';

export interface KeptStorage {
  storage: string;
  /** The kept Data.fs, its index, and the kept blob tree, where there. */
  file?: string;
  index?: string;
  blobDir?: string;
  /** Bytes of the kept Data.fs and index, and of the blob tree's files (most are hard links shared with the live tree). */
  bytes: number;
  blobFiles: number;
}

/** The state one restore kept: its stamp (when it ran, UTC) and what each storage kept. */
export interface KeptState {
  stamp: string;
  storages: KeptStorage[];
  bytes: number;
}

/** `<live>.before-restore-<STAMP>[-N]` → STAMP[-N]; undefined for any other name. */
function keptStamp(live: string, name: string): string | undefined {
  const prefix = `${path.basename(live)}${KEPT_INFIX}`;
  if (!name.startsWith(prefix)) return undefined;
  const rest = name.slice(prefix.length).replace(/\.index$/, '');
  const m = /^(\d{4}(?:-\d\d){5})(-\d+)?$/.exec(rest);
  return m && isStamp(m[1]!) ? rest : undefined;
}

async function treeSize(dir: string): Promise<{ bytes: number; files: number }> {
  let bytes = 0;
  let files = 0;
  const walk = async (d: string) => {
    for (const e of await fsp.readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) {
        bytes += (await fsp.lstat(p).catch(() => undefined))?.size ?? 0;
        files++;
      }
    }
  };
  await walk(dir);
  return { bytes, files };
}

/** Every kept state of the deployment, oldest first. */
export async function listKept(dep: Deployment): Promise<KeptState[]> {
  const byStamp = new Map<string, KeptState>();
  const at = (stamp: string, storage: string): KeptStorage => {
    let st = byStamp.get(stamp);
    if (!st) byStamp.set(stamp, (st = { stamp, storages: [], bytes: 0 }));
    let k = st.storages.find((x) => x.storage === storage);
    if (!k) st.storages.push((k = { storage, bytes: 0, blobFiles: 0 }));
    return k;
  };
  for (const s of dep.storages) {
    for (const live of [s.file, ...(s.blobDir ? [s.blobDir] : [])]) {
      const dir = path.dirname(live);
      for (const name of await fsp.readdir(dir).catch(() => [] as string[])) {
        const stamp = keptStamp(live, name);
        if (!stamp) continue;
        const p = path.join(dir, name);
        const st = await fsp.lstat(p).catch(() => undefined);
        if (!st || st.isSymbolicLink()) continue;
        const k = at(stamp, s.name);
        if (live === s.blobDir && st.isDirectory()) {
          const t = await treeSize(p);
          k.blobDir = p;
          k.bytes += t.bytes;
          k.blobFiles += t.files;
        } else if (live === s.file && st.isFile()) {
          if (name.endsWith('.index')) k.index = p;
          else k.file = p;
          k.bytes += st.size;
        }
      }
    }
  }
  const out = [...byStamp.values()].sort((a, b) => (a.stamp < b.stamp ? -1 : 1));
  for (const k of out) k.bytes = k.storages.reduce((n, s) => n + s.bytes, 0);
  return out;
}

/** Deletes the kept states with these stamps (default: all); returns what was removed. */
export async function deleteKept(dep: Deployment, stamps?: string[]): Promise<string[]> {
  const removed: string[] = [];
  for (const k of await listKept(dep)) {
    if (stamps && !stamps.includes(k.stamp)) continue;
    for (const s of k.storages) {
      for (const p of [s.file, s.index, s.blobDir]) {
        if (!p) continue;
        await fileLayer.rm(p, { recursive: true, force: true });
        removed.push(p);
      }
    }
  }
  return removed;
}

export interface UndoResult {
  /** The kept state put back. */
  stamp: string;
  results: StorageRestoreResult[];
  /** The kept copies used, removed after the undo. */
  removed: string[];
}

/**
 * Puts back the newest kept state (that of the last restore): a restore from
 * those copies, keeping what it replaces (so it can be undone in turn). Every
 * storage must have its Data.fs kept, and its blob tree where it has one.
 */
export async function undoRestore(dep: Deployment, opts: OperationOptions & { force?: boolean; lockWaitMs?: number; now?: () => Date } = {}): Promise<UndoResult> {
  const last = (await listKept(dep)).at(-1);
  if (!last) {
    throw new PloneBackupError('NOT_FOUND', 'There is no restore to undo: no state kept by a restore (*.before-restore-*) is beside the live files.', {
      hint: 'A restore run with --discard-old keeps nothing to go back to.',
    });
  }
  for (const s of dep.storages) {
    const k = last.storages.find((x) => x.storage === s.name);
    if (!k?.file || (s.blobDir && !k.blobDir)) {
      throw new PloneBackupError(
        'NOT_FOUND',
        `The restore of ${last.stamp} did not keep ${s.name}'s ${!k?.file ? path.basename(s.file) : path.basename(s.blobDir!)}; it cannot be undone.`,
        {
          path: path.dirname(s.file),
          hint: 'Restore a backup instead.',
        },
      );
    }
  }
  const session = await openRestore(dep, {
    ...opts,
    keepOld: true,
    source: (s) => {
      const k = last.storages.find((x) => x.storage === s.name)!;
      return { type: 'copy', file: k.file!, blobDir: k.blobDir };
    },
  });
  let results: StorageRestoreResult[];
  try {
    results = await session.run();
  } finally {
    await session.close();
  }
  return { stamp: last.stamp, results, removed: await deleteKept(dep, [last.stamp]) };
}

/** For each storage, the stamp of the backup the live Data.fs equals (its piece ends where the file ends, with the same last transaction). */
export async function liveGenerations(dep: Deployment, views: StorageView[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const v of views) {
    const s = dep.storages.find((x) => x.name === v.storage);
    if (!s) continue;
    let fh;
    try {
      fh = await fsp.open(s.file, 'r');
    } catch {
      continue;
    }
    try {
      const size = (await fh.stat()).size;
      const gens = v.groups.flatMap((g) => g.chains.flatMap((c) => [c.full, ...c.incrementals])).filter((g) => g.end === size && g.lastTid);
      if (!gens.length) continue;
      const h = await txnEndingAt(fh, size, size).catch(() => undefined);
      const tid = h?.tid.toString('hex');
      const hit = gens.filter((g) => g.lastTid === tid).sort((a, b) => (a.stamp < b.stamp ? 1 : -1))[0];
      if (hit) out.set(v.storage, hit.stamp);
    } finally {
      await fh.close();
    }
  }
  return out;
}

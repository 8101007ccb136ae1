/**
 * What a restore will do, per storage: the source (a repository or another
 * site's files), the chain as of the date, the blob generation that belongs to
 * its last piece, and whether the live Data.fs is a prefix of that state (the
 * incremental restore). Planning reads only; it runs under the session's
 * locks (index.ts), so what it finds is what the restore then does.
 */

import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { PloneBackupError } from '../../base/errors';
import { exists } from '../../base/io';
import { readPiece } from '../../base/streams';
import type { OperationOptions } from '../../base/progress';
import { txnEndingAt } from '../../zodb/filestorage';
import { findChain, listRepository, readDat, datLinesFor, datName, type DatLine, type RepoFile } from '../../repozo/repository';
import { listGenerations, readManifestHead, type Generation } from '../blobgen';
import { KINDS, foldersFor, type Kind } from '../kinds';
import type { Deployment, StorageConfig } from '../deployment';

export interface RestoreOptions extends OperationOptions {
  kind?: Kind;
  /** Normalised repozo date (yyyy-mm-dd[-hh[-mm[-ss]]], UTC); undefined: the newest. */
  date?: string;
  /** Restore even though the site holds its lock. */
  force?: boolean;
  /** Restore with a blob generation not made with the state even when it lacks files the state needs. */
  allowMissingBlobs?: boolean;
  /** Keep the replaced state aside (default true). */
  keepOld?: boolean;
  /** How blob files get into the restored blobstorage: hard links to the backup (default) or copies. */
  blobMode?: 'link' | 'copy';
  /** Try the incremental restore (default true). */
  incremental?: boolean;
  /** Restore from other folders (altrestore). */
  source?: (s: StorageConfig) => RestoreSource | Promise<RestoreSource>;
  /**
   * Makes the source before it is read (a restore from a remote fetches it,
   * remote/pull.ts): called once every storage's site is locked and known to
   * be stopped, before the repositories are locked and the plan made; it may
   * give the date, when only what it fetched says it.
   */
  prepare?: () => Promise<Pick<RestoreOptions, 'date'> | void>;
  lockWaitMs?: number;
  now?: () => Date;
  /** Restore only the blobstorage (only_blobs): Data.fs is left as it is. */
  blobsOnly?: boolean;
}

/** RestoreOptions with every default decided (here, and nowhere else). */
export type Settled = RestoreOptions & Required<Pick<RestoreOptions, 'kind' | 'force' | 'allowMissingBlobs' | 'keepOld' | 'blobMode' | 'incremental' | 'now'>>;

export function settle(opts: RestoreOptions): Settled {
  return {
    ...opts,
    kind: opts.kind ?? 'backup',
    force: opts.force ?? false,
    allowMissingBlobs: opts.allowMissingBlobs ?? false,
    keepOld: opts.keepOld ?? true,
    blobMode: opts.blobMode ?? 'link',
    incremental: opts.incremental ?? true,
    now: opts.now ?? (() => new Date()),
  };
}

export type RestoreSource = { type: 'repository'; repo: string; blobs?: string } | { type: 'copy'; file: string; blobDir?: string };

export interface StoragePlan {
  storage: StorageConfig;
  source: RestoreSource;
  /** The state restored: the stamp of the last piece (repository sources). */
  stamp?: string;
  chain: RepoFile[];
  lines: (DatLine | undefined)[];
  generation?: Generation;
  /** Set when the blob generation is not the one made with the last piece. */
  mismatch?: string;
  /** The piece index after which the live Data.fs continues, for an incremental restore. */
  appendAfter?: number;
  /** The blob generation made with that piece (the state the live site is in), when there is one. */
  baseGeneration?: Generation;
  /** `blobs`: only the blobstorage is restored (only_blobs). */
  mode: 'full' | 'incremental' | 'unchanged' | 'blobs';
}

/** Where each storage is restored from: `opts.source` (altrestore), else the kind's repository. */
export async function sourcesFor(dep: Deployment, opts: Settled): Promise<RestoreSource[]> {
  const out: RestoreSource[] = [];
  for (const s of dep.storages) {
    const f = foldersFor(s, opts.kind);
    // only_blobs: there is no filestorage repository; the blob folder is the one locked and read.
    const repo = opts.blobsOnly ? f.blobs : f.repo;
    out.push((await opts.source?.(s)) ?? { type: 'repository', repo, blobs: s.blobDir ? f.blobs : undefined });
  }
  return out;
}

/** The plan of one storage from its source. */
export async function planStorage(s: StorageConfig, source: RestoreSource, opts: Settled): Promise<StoragePlan> {
  if (source.type === 'copy') return planCopy(s, source);
  if (opts.blobsOnly) return planBlobsOnly(s, source, opts);
  const { chain, lines, stamp } = await planChain(s, source, opts);
  const plan: StoragePlan = { storage: s, source, stamp, chain, lines, mode: 'full' };
  const gens = s.blobDir ? (source.blobs ? await listGenerations(source.blobs, path.basename(s.blobDir)) : []) : [];
  if (s.blobDir) pickGeneration(plan, gens, opts);
  if (opts.incremental) await planIncremental(plan, gens);
  return plan;
}

/** only_blobs: the newest blob backup at the date (a generation, an archive, a chain's delta), nothing else. */
async function planBlobsOnly(s: StorageConfig, source: Extract<RestoreSource, { type: 'repository' }>, opts: Settled): Promise<StoragePlan> {
  if (!s.blobDir || !source.blobs)
    throw new PloneBackupError('CONFIG_BAD', `only_blobs is set but ${s.name} has no blobstorage.`, { hint: 'Set blob_storage, or unset only_blobs.' });
  const gens = (await listGenerations(source.blobs, path.basename(s.blobDir))).filter((g) => g.stamp && (opts.date === undefined || g.stamp <= opts.date));
  const g = gens.at(-1);
  if (!g) {
    throw new PloneBackupError('NO_BACKUPS', `There is no blob backup of ${s.name} in ${source.blobs}${opts.date ? ` from before ${opts.date}` : ''}.`, {
      path: source.blobs,
      hint: opts.date ? 'Pick a later date; `plone-backup list` shows the backups there are.' : 'Make one first with `plone-backup backup`.',
    });
  }
  return { storage: s, source, stamp: g.stamp, chain: [], lines: [], generation: g, mode: 'blobs' };
}

/** Another site's Data.fs and blobstorage (altrestore); whether that site runs is asked under the session's locks. */
async function planCopy(s: StorageConfig, source: Extract<RestoreSource, { type: 'copy' }>): Promise<StoragePlan> {
  if (!(await exists(source.file))) {
    throw new PloneBackupError('NOT_FOUND', `There is no ${path.basename(source.file)} in ${path.dirname(source.file)} to restore from.`, { path: source.file });
  }
  const generation: Generation | undefined =
    source.blobDir && (await exists(source.blobDir)) ? { name: path.basename(source.blobDir), path: source.blobDir, kind: 'dir', content: source.blobDir } : undefined;
  if (s.blobDir && !generation) {
    throw new PloneBackupError('NOT_FOUND', `There is no blobstorage beside ${source.file} to restore ${s.name}'s blobs from.`, { path: path.dirname(source.file) });
  }
  return { storage: s, source, chain: [], lines: [], generation, mode: 'full' };
}

/** The chain as of the date, and its .dat lines. */
async function planChain(
  s: StorageConfig,
  source: Extract<RestoreSource, { type: 'repository' }>,
  opts: Settled,
): Promise<{ chain: RepoFile[]; lines: (DatLine | undefined)[]; stamp: string }> {
  const what = KINDS[opts.kind].noun;
  const make = KINDS[opts.kind].makeCommand;
  let files: RepoFile[];
  try {
    ({ files } = await listRepository(source.repo));
  } catch (e) {
    if (!PloneBackupError.is(e, 'REPO_MISSING')) throw e;
    throw noRepository(s, source.repo, opts);
  }
  // No date: the newest backup, even one whose stamp is ahead of the clock
  // (backups in the same second take the next free stamp).
  const chain = findChain(files, opts.date);
  if (chain.length === 0) {
    throw new PloneBackupError(
      'NO_BACKUPS',
      opts.date ? `There is no ${what} of ${s.name} in ${source.repo} from before ${opts.date}.` : `There is no ${what} of ${s.name} in ${source.repo}.`,
      {
        path: source.repo,
        hint: opts.date ? 'Pick a later date; `plone-backup list` shows the backups there are.' : `Make one first with \`plone-backup ${make}\`.`,
      },
    );
  }
  const dat = await readDat(path.join(source.repo, datName(chain[0]!.stamp)));
  const lines = dat ? datLinesFor(chain, dat) : chain.map(() => undefined);
  return { chain, lines, stamp: chain[chain.length - 1]!.stamp };
}

/** There are no backups of this kind at all: the folder is not there. */
export function noRepository(s: StorageConfig, repo: string, opts: Settled): PloneBackupError {
  return new PloneBackupError('NO_BACKUPS', `There is no ${KINDS[opts.kind].noun} of ${s.name}: ${repo} does not exist.`, {
    path: repo,
    hint: `Make one first with \`plone-backup ${KINDS[opts.kind].makeCommand}\`.`,
  });
}

/** The blob generation made with the last piece, else the nearest older one (marked as a mismatch). */
function pickGeneration(plan: StoragePlan, gens: Generation[], opts: Settled): void {
  const stamp = plan.stamp!;
  let g = gens.find((x) => x.stamp === stamp);
  if (!g) {
    const older = gens.filter((x) => x.stamp !== undefined && x.stamp <= stamp);
    g = older.at(-1) ?? (opts.date === undefined ? gens.find((x) => x.number === 0) : undefined);
    if (g) plan.mismatch = `the blob backup ${g.name} was not made with the filestorage backup ${stamp}; some blobs may be missing or extra`;
  }
  if (!g) {
    const blobs = plan.source.type === 'repository' ? plan.source.blobs : undefined;
    throw new PloneBackupError('NOT_FOUND', `There is no blob backup for ${plan.storage.name} at ${stamp} in ${blobs}.`, {
      path: blobs,
      hint: 'Without it the restored site would miss blob files; restore an earlier date that has one (`plone-backup list`).',
    });
  }
  plan.generation = g;
}

/** Marks the plan incremental when the live Data.fs is a prefix of the wanted state ending at a piece boundary. */
async function planIncremental(plan: StoragePlan, gens: Generation[]): Promise<void> {
  const file = plan.storage.file;
  if (plan.source.type !== 'repository' || plan.lines.some((l) => !l)) return;
  // The live blob files are trusted to be there: not when their folder is gone.
  if (plan.storage.blobDir && plan.generation && !(await exists(plan.storage.blobDir))) return;
  let fh;
  try {
    fh = await fsp.open(file, 'r');
  } catch {
    return;
  }
  try {
    const at = await liveBoundary(fh, plan);
    if (!at) return;
    const { k, last } = at;
    const l = plan.lines[k]!;
    const size = l.end;
    const piece = plan.chain[k]!;
    const g = gens.find((x) => x.stamp === piece.stamp);
    const m = g && (await readManifestHead(g));
    // The live file must end as the piece ends. The generation made with the
    // piece names the piece's last transaction: when the piece is gzipped, a
    // matching tid at the same end says so without gunzipping what may be the
    // whole database (a full piece) to reach its last bytes.
    if (piece.gzip && m?.lastTid && m.end === l.end && last) {
      if (last.tid.toString('hex') !== m.lastTid) return;
    } else {
      const n = Math.min(64 * 1024, l.end - l.start);
      const live = Buffer.alloc(n);
      await fh.read(live, 0, n, size - n);
      const tail = await pieceTail(path.join(plan.source.repo, piece.name), piece.gzip, l.end - l.start, n);
      if (!tail || !tail.equals(live)) return;
    }
    if (g && m && m.end === l.end) plan.baseGeneration = g;
    plan.appendAfter = k;
    plan.mode = k === plan.chain.length - 1 ? 'unchanged' : 'incremental';
  } finally {
    await fh.close();
  }
}

/**
 * The piece of the chain at whose end the live file ends, when it ends with a
 * whole transaction and no earlier boundary holds a voted ('c') transaction:
 * an incremental restore killed before its commit leaves its first appended
 * transaction voted at a piece boundary, which is no committed state.
 */
async function liveBoundary(fh: FileHandle, plan: StoragePlan): Promise<{ k: number; last?: Awaited<ReturnType<typeof txnEndingAt>> } | undefined> {
  const size = (await fh.stat()).size;
  const k = plan.lines.findIndex((l) => l!.end === size);
  if (k < 0) return undefined;
  const last = size > 4 ? await txnEndingAt(fh, size, size) : undefined;
  if (size > 4 && !last) return undefined;
  for (let j = 0; j < k; j++) {
    const b = Buffer.alloc(1);
    const { bytesRead } = await fh.read(b, 0, 1, plan.lines[j]!.end + 16);
    if (bytesRead === 1 && b[0] === 0x63) return undefined;
  }
  return { k, last };
}

async function pieceTail(file: string, gzip: boolean, size: number, n: number): Promise<Buffer | undefined> {
  if (!gzip) {
    const fh = await fsp.open(file, 'r').catch(() => undefined);
    if (!fh) return undefined;
    try {
      const b = Buffer.alloc(n);
      const { bytesRead } = await fh.read(b, 0, n, size - n);
      return bytesRead === n ? b : undefined;
    } finally {
      await fh.close();
    }
  }
  let keep = Buffer.alloc(0);
  try {
    for await (const c of readPiece(file, true)) {
      keep = Buffer.concat([keep, c]);
      if (keep.length > n) keep = keep.subarray(keep.length - n);
    }
  } catch {
    return undefined;
  }
  return keep.length === n ? keep : undefined;
}

/** altrestore's sources: a folder holding Data.fs (+ blobstorage), or a var folder / repository of another deployment. */
export async function altSource(sourceDir: string, s: StorageConfig): Promise<RestoreSource> {
  const src = path.resolve(sourceDir);
  const fsName = path.basename(s.file);
  const sfx = s.name === 'main' ? '' : `_${s.name}`;
  // Backups first, as the recipe's altrestore: they are consistent states by
  // construction, while another site's live Data.fs and blobstorage may be in
  // motion (that site may be running) and agree with each other only by luck.
  const repo = path.join(src, `backups${sfx}`);
  if ((await listRepository(repo).catch(() => ({ files: [] }))).files.length) {
    return { type: 'repository', repo, blobs: path.join(src, `blobstoragebackups${sfx}`) };
  }
  for (const cand of [path.join(src, fsName), path.join(src, 'filestorage', fsName)]) {
    if (await exists(cand)) {
      const blobBase = s.blobDir ? path.basename(s.blobDir) : undefined;
      const blobCands = blobBase ? [path.join(path.dirname(cand), blobBase), path.join(src, blobBase)] : [];
      let blobDir: string | undefined;
      for (const b of blobCands) if (await exists(b)) blobDir = b;
      return { type: 'copy', file: cand, blobDir };
    }
  }
  const { files } = await listRepository(src);
  if (files.length) return { type: 'repository', repo: src, blobs: path.join(path.dirname(src), `blobstoragebackups${sfx}`) };
  throw new PloneBackupError('NOT_FOUND', `${src} holds neither a ${fsName} nor backups to restore from.`, {
    path: src,
    hint: 'Point altrestore at a folder with Data.fs and blobstorage, or at a var folder with backups/.',
  });
}

export interface StorageRestoreResult {
  storage: string;
  mode: StoragePlan['mode'];
  stamp?: string;
  bytesWritten: number;
  blobFilesAdded: number;
  generation?: string;
  keptOld: string[];
  warnings: string[];
}

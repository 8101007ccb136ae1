/**
 * `plone-backup push`: every complete local generation that the remote does
 * not have yet, oldest first, in the layout of layout.ts. A generation is
 * complete when its piece has its .dat line (repozo registers a piece last)
 * and, for a storage with blobs, its blob generation is there (a backup
 * renames the blob generation into place before it registers the piece).
 *
 * What it costs: one listing of `<storage>/generations/`, then only what is
 * new. What the remote already has is known from a local index beside the
 * backups (pushindex.ts: the stamps pushed and every object key with its
 * size and SHA-256), grown from the remote's
 * own manifests when the remote has generations the index does not know (a
 * push from elsewhere, a lost index), and thrown away when the remote lacks
 * one it knew (a bucket emptied, a retention elsewhere). Objects are written
 * with If-None-Match, so one that is there anyway costs a refused request,
 * not a corruption; after an interrupted push (the index says so) a key the
 * index does not know is looked at with HEAD before it is sent.
 *
 * Per generation: its pieces, its index and its new blob files first, each
 * hashed (SHA-256 recorded, MD5 sent), then its manifest, last; the index is
 * saved after every generation, so an interruption costs at most the
 * generation being pushed. Blob files of 1 MiB or more go up as objects of
 * their own (eight at a time); smaller ones are read once each and packed
 * into packs of 16 MiB (layout.ts), two sent at a time while the next fills,
 * always in one order (oid, tid): the same files make the same packs.
 * A pool generation whose parent generation is on the remote names its new
 * files itself, so a push after 10 new blob files reads those 10 entries,
 * not the state's 20,000 (blobPlan).
 *
 * Before its first write a push takes the remote's push lock (lock.ts), and
 * its look at the remote is one made under the lock: no forget deletes while
 * it writes, so nothing its manifests name (sent now, or known to be there)
 * goes away under it. The index tells whether there is something new, so
 * the lock comes before the one listing; a push with nothing new takes no
 * lock (and one that finds more than its index told looks again under it).
 *
 * Every kind a deployment keeps (deploy/kinds.ts: backups, snapshots, zip
 * backups), each into its space on the remote (layout.ts) with its own local
 * index (beside its repository). Blob generations are pushed from dir trees
 * (the recipe's layout) and pool generations through blobpool's
 * generationFiles, a single archive (tar, tar.gz: zip backups, archive_blob)
 * as it is, an incremental_blobs chain as its archives, each once (a delta
 * whose full archive is gone is reported as skipped).
 */

import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { PloneBackupError, checkAbort } from '../base/errors';
import { readAt } from '../base/streams';
import type { OperationOptions } from '../base/progress';
import { allChains, datName, indexName, listRepository, readDat, type DatLine } from '../repozo/repository';
import { describeRepository, type PieceInfo } from '../repozo/pieceinfo';
import { eachAtMost, parseBlobRelPath, readLayout, type BlobLayout } from '../zodb/blobdir';
import { listGenerations, readManifest, readManifestHead, type Generation } from '../deploy/blobgen';
import { generationFiles } from '../deploy/blobpool';
import type { Deployment, StorageConfig } from '../deploy/deployment';
import { KIND_ORDER, foldersFor, type Kind } from '../deploy/kinds';
import {
  MANIFEST_FORMAT,
  MANIFEST_VERSION,
  PACK_BLOB,
  PACK_TARGET,
  RemoteResolver,
  ARCHIVE_NAME,
  packKey,
  archiveKey,
  spaceOf,
  blobId,
  blobKey,
  indexKey,
  isStorageName,
  manifestKey,
  pieceKey,
  remoteStamps,
  type RemoteBlob,
  type RemoteManifest,
  type RemotePiece,
} from './layout';
import { RemoteLock } from './lock';
import { emptyPushIndex, loadPushIndex, markPushIndexDirty, savePushIndex, type PushIndex } from './pushindex';
import { blobSealer } from './crypt';
import { hashBuffer, hashFile, openNoFollow, type RemoteStats, type RemoteTarget } from './target';

export interface PushOptions extends OperationOptions {
  /** Look every object up with HEAD before sending it, whatever the local index says. */
  paranoid?: boolean;
  /** How long to wait for a forget running on the remote (default 10 minutes). */
  lockWaitMs?: number;
}

export interface StoragePushResult {
  /** The storage's name, or for snapshots and zip backups its space on the remote (`main/snapshot`, layout.ts). */
  storage: string;
  kind: Kind;
  /** Stamps of the generations written to the remote by this push. */
  pushed: string[];
  /** Stamps already on the remote (or written by a push running at the same time). */
  present: number;
  /** Local generations not pushed, and why. */
  skipped: { stamp: string; why: string }[];
  objects: number;
  bytes: number;
}

export interface PushResult {
  url: string;
  storages: StoragePushResult[];
  stats: RemoteStats;
}

/** The local index of what the remote holds, beside the storage's backups (of that kind). */
export function pushIndexPath(s: StorageConfig, url: string, kind: Kind = 'backup'): string {
  return path.join(foldersFor(s, kind).repo, `.plone-backup.remote-${createHash('sha256').update(url).digest('hex').slice(0, 16)}.json`);
}

/** A local generation that can be pushed: the chain up to its piece, its .dat lines and its blob generation. */
interface LocalGen {
  stamp: string;
  full: string;
  chain: { name: string; line: DatLine }[];
  blob?: Generation;
  /** A blob generation kept as one archive (tar, tar.gz), pushed as it is. */
  archive?: Generation;
  /** An incremental_blobs chain: the paths of its archives, the full one first, this generation's last. */
  archives?: string[];
}

interface PushContext {
  resolver: RemoteResolver;
  local: Map<string, LocalGen>;
  /** Stamps on the remote: listed at the start, or pushed since. */
  onRemote: Set<string>;
  /** What each piece holds (transactions, the last one's time, user and note), for the manifests. */
  infos: () => Promise<Map<string, PieceInfo>>;
}

/** Pushes every storage of the deployment (see the header). */
export async function pushDeployment(dep: Deployment, t: RemoteTarget, opts: PushOptions = {}): Promise<PushResult> {
  const storages: StoragePushResult[] = [];
  // Taken before the first write, held to the end: a forget never deletes while this push writes (lock.ts).
  const held: { lock?: RemoteLock } = {};
  const lock = async () => {
    if (held.lock) return false;
    held.lock = await RemoteLock.acquire(t, 'push', { signal: opts.signal, waitMs: opts.lockWaitMs, log: opts.log });
    return true;
  };
  try {
    for (const s of dep.storages)
      for (const kind of KIND_ORDER) {
        const r = await pushStorage(s, kind, t, opts, lock);
        // Snapshots and zip backups only where there are some.
        if (kind === 'backup' || r.pushed.length || r.present || r.skipped.length) storages.push(r);
      }
  } finally {
    await held.lock?.release();
  }
  return { url: t.url, storages, stats: { ...t.stats } };
}

async function localGenerations(s: StorageConfig, kind: Kind, skipped: StoragePushResult['skipped']): Promise<LocalGen[]> {
  const { repo, blobs: blobFolder } = foldersFor(s, kind);
  let files;
  try {
    ({ files } = await listRepository(repo));
  } catch (e) {
    if (PloneBackupError.is(e, 'REPO_MISSING')) return [];
    throw e;
  }
  const gens = s.blobDir ? await listGenerations(blobFolder, path.basename(s.blobDir)) : [];
  const byStamp = new Map(gens.filter((g) => g.stamp).map((g) => [g.stamp!, g]));
  const out: LocalGen[] = [];
  for (const chain of allChains(files)) {
    const dat = await readDat(path.join(repo, datName(chain[0]!.stamp))).catch(() => undefined);
    if (!dat) {
      skipped.push({ stamp: chain[0]!.stamp, why: 'its chain has no readable .dat' });
      continue;
    }
    const byName = new Map(dat.map((l) => [path.basename(l.path), l]));
    const pieces: LocalGen['chain'] = [];
    for (const f of chain) {
      const line = byName.get(f.name);
      if (!line) break; // not registered (yet): neither it nor what follows is complete
      pieces.push({ name: f.name, line });
      const g: LocalGen = { stamp: f.stamp, full: chain[0]!.stamp, chain: [...pieces] };
      if (s.blobDir) {
        const b = byStamp.get(f.stamp);
        if (!b) {
          skipped.push({ stamp: f.stamp, why: 'it has no blob generation' });
          continue;
        }
        // Trees and pool generations: generationFiles reads both. A single archive goes as it is;
        // an incremental_blobs chain as its archives (the full one, its deltas up to this one).
        if (b.kind === 'dir' || b.kind === 'pool') g.blob = b;
        else if (!b.delta && b.archives === undefined) g.archive = b;
        else if (b.archives?.length) g.archives = b.archives;
        else {
          skipped.push({ stamp: f.stamp, why: 'its blob generation is a delta of an incremental_blobs chain whose full archive (with its .snar) is gone' });
          continue;
        }
      }
      out.push(g);
    }
  }
  return out.sort((a, b) => (a.stamp < b.stamp ? -1 : 1));
}

async function pushStorage(s: StorageConfig, kind: Kind, t: RemoteTarget, opts: PushOptions, lock: () => Promise<boolean>): Promise<StoragePushResult> {
  if (!isStorageName(s.name))
    throw new PloneBackupError('CONFIG_BAD', `The storage name ${JSON.stringify(s.name)} cannot name remote objects.`, { hint: 'Name storages with letters, digits, _ . -' });
  const space = spaceOf(s.name, kind);
  const res: StoragePushResult = { storage: space, kind, pushed: [], present: 0, skipped: [], objects: 0, bytes: 0 };
  const local = await localGenerations(s, kind, res.skipped);
  if (!local.length) return res;
  const ixFile = pushIndexPath(s, t.url, kind);
  const survey = async (known?: PushIndex) => {
    let ix = known ?? (await loadPushIndex(ixFile, t.url));
    const remote = new Set(await remoteStamps(t, space, opts.signal));
    // The remote lost a generation we pushed: what we knew of it is no longer sure.
    if (ix.gens.some((g) => !remote.has(g))) ix = emptyPushIndex(t.url, true);
    const resolver = new RemoteResolver(t, space, opts.signal);
    const gens = new Set(ix.gens);
    for (const stamp of [...remote].sort()) {
      if (gens.has(stamp)) continue;
      // Pushed from elsewhere, or an index lost: learn its objects from its manifest.
      const m = await resolver.manifest(stamp);
      if (m) learn(ix, space, m, await resolver.blobs(stamp));
      ix.gens.push(stamp);
    }
    return { ix, remote, resolver, todo: local.filter((g) => !remote.has(g.stamp)) };
  };
  // Something to write: the remote's push lock first (no forget deletes meanwhile), and the look at
  // the remote made under it. Whether there is something is first told by the index (a generation
  // it does not list), so the usual push looks once; when the look finds more than the index told,
  // the lock is taken then and the remote looked at again (a forget may have run in between).
  const first = await loadPushIndex(ixFile, t.url);
  const listed = new Set(first.gens);
  // What the pieces hold is read (from the piece cache, describeRepository) only when something is
  // pushed, and while the lock and the listing wait for the server.
  let described: Promise<Map<string, PieceInfo>> | undefined;
  const infos = () => (described ??= pieceInfos(foldersFor(s, kind).repo, opts.signal));
  if (local.some((g) => !listed.has(g.stamp))) {
    void infos();
    await lock();
  }
  let sv = await survey(first);
  if (sv.todo.length && (await lock())) sv = await survey();
  const { ix, remote, resolver, todo } = sv;
  res.present = local.length - todo.length;
  if (!todo.length) {
    await saveIndexIfChanged(ixFile, ix, remote);
    return res;
  }
  const unsure = ix.dirty || opts.paranoid === true;
  ix.dirty = true;
  await markPushIndexDirty(ixFile);
  const ctx: PushContext = { resolver, local: new Map(local.map((g) => [g.stamp, g])), onRemote: remote, infos };
  for (const g of todo) {
    checkAbort(opts.signal);
    const wrote = await pushGeneration(s, kind, t, g, ix, ctx, unsure, opts, res);
    remote.add(g.stamp);
    if (wrote) res.pushed.push(g.stamp);
    else res.present++;
    ix.gens.push(g.stamp);
    // After the last one the index is whole again: it is written, then its marker removed.
    if (g === todo.at(-1)) ix.dirty = false;
    await savePushIndex(ixFile, ix);
  }
  return res;
}

async function saveIndexIfChanged(file: string, ix: PushIndex, remote: Set<string>): Promise<void> {
  // Only when it learned something: a push with nothing to do writes nothing.
  if (ix.gens.length !== remote.size || ix.dirty) await savePushIndex(file, ix);
  else if (!(await fsp.lstat(file).catch(() => undefined))) await savePushIndex(file, ix);
}

/** Each piece's PieceInfo by name; none when the repository cannot be described (a manifest then goes without). */
async function pieceInfos(repo: string, signal?: AbortSignal): Promise<Map<string, PieceInfo>> {
  const infos = new Map<string, PieceInfo>();
  for (const c of await describeRepository(repo, signal).catch(() => [])) for (const p of c.pieces) infos.set(p.name, p);
  return infos;
}

/** Waits for every one of them (none left running), then throws the first failure. */
async function allOrFirstError(work: Promise<unknown>[]): Promise<void> {
  const failed = (await Promise.allSettled(work)).find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

/** The end of an archive's name that the remote keeps: layout.ts's ARCHIVE_NAME, not anchored at the start. */
const ARCHIVE_SUFFIX = new RegExp(ARCHIVE_NAME.source.replace(/^\^/, ''));

function learn(ix: PushIndex, storage: string, m: RemoteManifest, blobs: Map<string, RemoteBlob>): void {
  for (const a of m.archives ?? []) ix.objects[archiveKey(storage, a.name)] = [a.size, a.sha256];
  for (const p of m.pieces) ix.objects[pieceKey(storage, p.name)] = [p.size, p.sha256];
  if (m.index) ix.objects[indexKey(storage, m.stamp)] = [m.index.size, m.index.sha256];
  if (m.archive) ix.objects[archiveKey(storage, m.archive.name)] = [m.archive.size, m.archive.sha256];
  for (const e of blobs.values()) ix.objects[blobKey(storage, e[0], e[1])] = e.length === 6 ? [e[2], e[3], e[4], e[5]] : [e[2], e[3]];
}

/**
 * Sends `file` as `key` unless the index knows it (with that size); returns
 * its SHA-256. `unsure`: a key the index does not know is looked at first.
 */
async function sendFile(t: RemoteTarget, key: string, file: string, size: number, ix: PushIndex, unsure: boolean, res: StoragePushResult, signal?: AbortSignal): Promise<string> {
  const known = ix.objects[key];
  if (known && known[0] === size) return known[1];
  const sums = await hashFile(file, signal);
  if (sums.size !== size) throw new PloneBackupError('SOURCE_CHANGED', `${file} changed while it was pushed.`, { path: file, hint: 'Push again.' });
  const there = unsure ? await t.head(key, signal) : undefined;
  if (there && there.size !== size) throw sameNameDiffers(t, key, file);
  if (!there) {
    const r = await t.upload(key, file, sums, signal);
    if (r === 'exists') {
      const h = await t.head(key, signal);
      if (h?.size !== size) throw sameNameDiffers(t, key, file);
    } else {
      res.objects++;
      res.bytes += size;
    }
  }
  ix.objects[key] = [size, sums.sha256];
  return sums.sha256;
}

function sameNameDiffers(t: RemoteTarget, key: string, file: string): PloneBackupError {
  return new PloneBackupError('REMOTE_BAD', `The remote ${t.url} already holds ${key} with another size than ${file}: it is another site's or another chain's.`, {
    path: key,
    hint: 'Push every site to a prefix of its own (s3://BUCKET/SITE).',
  });
}

async function pushGeneration(
  s: StorageConfig,
  kind: Kind,
  t: RemoteTarget,
  g: LocalGen,
  ix: PushIndex,
  ctx: PushContext,
  unsure: boolean,
  opts: PushOptions,
  res: StoragePushResult,
): Promise<boolean> {
  const resolver = ctx.resolver;
  const repo = foldersFor(s, kind).repo;
  const space = spaceOf(s.name, kind);
  const signal = opts.signal;
  opts.onProgress?.({ phase: `pushing ${space} ${g.stamp}`, done: res.bytes });
  const pieces: RemotePiece[] = [];
  const m: RemoteManifest = { format: MANIFEST_FORMAT, version: MANIFEST_VERSION, storage: space, stamp: g.stamp, full: g.full, pieces };
  const info = (await ctx.infos()).get(g.chain.at(-1)!.name);
  if (info) {
    const { transactions, lastTid, lastTime, lastUser, lastDescription } = info;
    m.info = { transactions, lastTid, lastTime, lastUser: lastUser?.slice(0, 4096), lastDescription: lastDescription?.slice(0, 4096) };
  }
  // The pieces, the index and the blob files go up side by side (a push of one new backup is a
  // few requests, each a round trip); the manifest waits for all of them.
  await allOrFirstError([
    (async () => {
      for (const { name, line } of g.chain) {
        const file = path.join(repo, name);
        const st = await fsp.lstat(file);
        const sha256 = await sendFile(t, pieceKey(space, name), file, st.size, ix, unsure, res, signal);
        pieces.push({ name, start: line.start, end: line.end, md5: line.md5, size: st.size, sha256 });
      }
    })(),
    (async () => {
      const idx = path.join(repo, indexName(g.stamp));
      const ist = await fsp.lstat(idx).catch(() => undefined);
      if (ist?.isFile()) m.index = { size: ist.size, sha256: await sendFile(t, indexKey(space, g.stamp), idx, ist.size, ix, unsure, res, signal) };
    })(),
    (async () => {
      if (g.blob) m.blobs = await pushBlobs(space, t, g, ix, ctx, unsure, res, signal);
      if (g.archive) {
        const a = g.archive;
        const name = `${g.stamp}${a.kind === 'tar.gz' ? '.tar.gz' : '.tar'}`;
        const st = await fsp.lstat(a.path);
        m.archive = { name, size: st.size, sha256: await sendFile(t, archiveKey(space, name), a.path, st.size, ix, unsure, res, signal) };
      }
      if (g.archives) {
        const archives: NonNullable<RemoteManifest['archives']> = [];
        for (const file of g.archives) {
          // `<blob folder>.<stamp>[.delta].tar[.gz]` → `<stamp>[.delta].tar[.gz]` (listGenerations named them so).
          const name = path.basename(file).slice(-ARCHIVE_SUFFIX.exec(path.basename(file))![0].length);
          const st = await fsp.lstat(file);
          archives.push({ name, size: st.size, sha256: await sendFile(t, archiveKey(space, name), file, st.size, ix, unsure, res, signal) });
        }
        m.archives = archives;
      }
    })(),
  ]);
  const body = Buffer.from(JSON.stringify(m));
  const wrote = (await t.put(manifestKey(space, g.stamp), body, hashBuffer(body), signal)) === 'written';
  if (!wrote) {
    // Another push wrote it first: it must at least be sound, and its files are where it says, not in
    // the packs this push sent (no manifest names those; a forget deletes them), so the index learns its.
    const theirs = await resolver.manifest(g.stamp);
    if (theirs) learn(ix, space, theirs, await resolver.blobs(g.stamp));
  }
  opts.log?.(`${space} ${g.stamp}: ${wrote ? 'pushed' : 'already pushed by another run'}`);
  return wrote;
}

async function pushBlobs(
  space: string,
  t: RemoteTarget,
  g: LocalGen,
  ix: PushIndex,
  ctx: PushContext,
  unsure: boolean,
  res: StoragePushResult,
  signal?: AbortSignal,
): Promise<RemoteManifest['blobs']> {
  const gen = g.blob!;
  const head = await readManifestHead(gen).catch(() => undefined);
  const layout: BlobLayout = head?.layout ?? (await readLayout(gen.content!)).layout;
  const { added, count, bytes, parent } = await blobPlan(g, gen, layout, ctx);
  const entries: RemoteBlob[] = [];
  const small: BlobToSend[] = [];
  const big: BlobToSend[] = [];
  for (const f of added) {
    // Already on the remote (this chain's earlier push, another chain's): named where it is.
    const known = ix.objects[blobKey(space, f.oid, f.tid)];
    if (known?.[0] === f.size && known.length === 4 && /^[0-9a-f]{64}$/.test(known[2]) && Number.isSafeInteger(known[3]) && known[3] >= 0)
      entries.push([f.oid, f.tid, f.size, known[1], known[2], known[3]]);
    else if (known?.[0] === f.size && known.length === 2) entries.push([f.oid, f.tid, f.size, known[1]]);
    else (f.size < PACK_BLOB ? small : big).push(f);
  }
  await eachAtMost(
    big,
    8,
    async (f) => {
      const sha = await sendFile(t, blobKey(space, f.oid, f.tid), path.join(gen.content!, f.rel), f.size, ix, unsure, res, signal);
      entries.push([f.oid, f.tid, f.size, sha]);
    },
    signal,
  );
  entries.push(...(await sendPacked(space, t, gen.content!, small, ix, res, signal)));
  entries.sort((a, b) => (a[0] + a[1] < b[0] + b[1] ? -1 : 1));
  const blobs: NonNullable<RemoteManifest['blobs']> = { layout, count, bytes, files: entries };
  if (parent) blobs.parent = parent;
  return blobs;
}

interface BlobToSend {
  oid: string;
  tid: string;
  rel: string;
  size: number;
}

/**
 * The blob files a generation adds on the remote to its parent there (the
 * generation of the piece before, when it is on the remote and its files are
 * all in this one's), with the generation's totals. A pool generation whose
 * own parent is that one says so itself: its manifest's files are what it
 * adds, read without the state's other files (a push after 10 new blob files
 * reads 10 entries, not 20,000); else the state's files are compared with the
 * parent's.
 */
async function blobPlan(g: LocalGen, gen: Generation, layout: BlobLayout, ctx: PushContext): Promise<{ added: BlobToSend[]; count: number; bytes: number; parent?: string }> {
  const ids = (files: Iterable<[string, number]>) => {
    const out = new Map<string, BlobToSend>();
    for (const [rel, size] of files) {
      const id = parseBlobRelPath(rel, layout);
      if (!id) continue; // generationFiles gives blob paths only
      const oid = id.oid.toString('hex');
      const tid = id.tid.toString('hex');
      out.set(blobId(oid, tid), { oid, tid, rel, size });
    }
    return out;
  };
  const prev = g.chain.at(-2)?.name.slice(0, 19);
  if (gen.kind === 'pool' && prev && ctx.onRemote.has(prev) && ctx.local.get(prev)?.blob?.kind === 'pool') {
    const own = await readManifest(gen).catch(() => undefined);
    if (own && own.parent === prev && own.layout === layout && own.count !== undefined && own.bytes !== undefined)
      return { added: [...ids(own.files).values()], count: own.count, bytes: own.bytes, parent: prev };
  }
  const all = ids(await generationFiles(gen, layout));
  let bytes = 0;
  for (const f of all.values()) bytes += f.size;
  const p = await parentOf(g, ctx, all);
  return { added: [...all.entries()].filter(([id]) => !p?.files.has(id)).map(([, f]) => f), count: all.size, bytes, parent: p?.stamp };
}

/**
 * Sends small blob files in packs (layout.ts): read once each (sixteen at a
 * time), hashed, sealed on an encrypted remote, appended to the pack being
 * filled; a full pack goes up (two at a time) while the next fills, named by
 * the SHA-256 of its bytes. Returns the files' entries.
 */
async function sendPacked(
  space: string,
  t: RemoteTarget,
  content: string,
  files: BlobToSend[],
  ix: PushIndex,
  res: StoragePushResult,
  signal?: AbortSignal,
): Promise<RemoteBlob[]> {
  const sealer = blobSealer(t);
  const out: RemoteBlob[] = [];
  type Pack = { parts: Buffer[]; size: number; items: { f: BlobToSend; sha: string; offset: number }[] };
  const fresh = (): Pack => ({ parts: [], size: 0, items: [] });
  let cur = fresh();
  let failed: unknown;
  const inflight = new Set<Promise<void>>();
  const send = async (p: Pack) => {
    const body = Buffer.concat(p.parts, p.size);
    p.parts = [];
    const sums = hashBuffer(body);
    const key = packKey(space, sums.sha256);
    if ((await t.put(key, body, sums, signal)) === 'exists') {
      // The same bytes, from a push that ran at the same time: its name is its SHA-256.
      if ((await t.head(key, signal))?.size !== body.length)
        throw new PloneBackupError('REMOTE_BAD', `The remote ${t.url} holds ${key} with another size than its name says.`, {
          path: key,
          hint: 'Remove it from the remote, then push again.',
        });
    } else {
      res.objects++;
      res.bytes += body.length;
    }
    for (const { f, sha, offset } of p.items) {
      ix.objects[blobKey(space, f.oid, f.tid)] = [f.size, sha, sums.sha256, offset];
      out.push([f.oid, f.tid, f.size, sha, sums.sha256, offset]);
    }
  };
  const launch = (p: Pack) => {
    const pr: Promise<void> = send(p).then(
      () => void inflight.delete(pr),
      (e: unknown) => {
        inflight.delete(pr);
        failed ??= e;
      },
    );
    inflight.add(pr);
  };
  // Read 16 files ahead, but packed in one fixed order (by oid, then tid), never in the order the
  // reads finish: the same files always make the same packs, so a push that runs beside another,
  // or again after an interruption, sends a pack the remote already holds (refused, not an orphan).
  const order = [...files].sort((a, b) => (a.oid + a.tid < b.oid + b.tid ? -1 : a.oid + a.tid > b.oid + b.tid ? 1 : 0));
  const ahead: Promise<Buffer>[] = [];
  let next = 0;
  const readNext = () => {
    const f = order[next++]!;
    const r = readSmallFile(path.join(content, f.rel), f.size, signal);
    r.catch(() => undefined); // awaited in turn below; until then a failure is not unhandled
    ahead.push(r);
  };
  try {
    for (const f of order) {
      while (next < order.length && ahead.length < 16) readNext();
      if (failed !== undefined) break;
      const plain = await ahead.shift()!;
      const sha = createHash('sha256').update(plain).digest('hex');
      const stored = sealer.seal(blobKey(space, f.oid, f.tid), plain);
      cur.items.push({ f, sha, offset: cur.size });
      cur.parts.push(stored);
      cur.size += stored.length;
      if (cur.size >= PACK_TARGET) {
        launch(cur);
        cur = fresh();
        while (inflight.size >= 2) await Promise.race(inflight);
      }
    }
  } finally {
    // A read or a send that failed: the reads started ahead and the packs on their way end first.
    await Promise.allSettled([...ahead, ...inflight]);
  }
  if (cur.items.length && failed === undefined) launch(cur);
  await Promise.all(inflight);
  if (failed !== undefined) throw failed;
  return out;
}

/** A small regular file's bytes, read once (never through a link); SOURCE_CHANGED when it is not `size` bytes. */
async function readSmallFile(file: string, size: number, signal?: AbortSignal): Promise<Buffer> {
  checkAbort(signal);
  const fh = await openNoFollow(file);
  try {
    // One byte more than expected: a file that grew since it was listed shows as well as one that shrank.
    const b = await readAt(fh, 0, size + 1);
    if (b.length !== size) throw new PloneBackupError('SOURCE_CHANGED', `${file} changed while it was pushed.`, { path: file, hint: 'Push again.' });
    return b;
  } finally {
    await fh.close();
  }
}

/**
 * The parent: the generation of the piece before, when it is on the remote
 * and its files (read locally: no request) are all in this one's. A remote
 * parent that differs from the local one shows when the manifest is read
 * (its totals do not add up), never as a wrong restore.
 */
async function parentOf(g: LocalGen, ctx: PushContext, ids: Map<string, { size: number }>): Promise<{ stamp: string; files: Set<string> } | undefined> {
  const prev = g.chain.at(-2)?.name.slice(0, 19);
  const p = prev ? ctx.local.get(prev) : undefined;
  if (!prev || !p?.blob || !ctx.onRemote.has(prev)) return undefined;
  const layout: BlobLayout = (await readManifestHead(p.blob).catch(() => undefined))?.layout ?? (await readLayout(p.blob.content!)).layout;
  const files = new Set<string>();
  for (const [rel, size] of await generationFiles(p.blob, layout)) {
    const id = parseBlobRelPath(rel, layout);
    if (!id) continue;
    const k = blobId(id.oid.toString('hex'), id.tid.toString('hex'));
    if (ids.get(k)?.size !== size) return undefined;
    files.add(k);
  }
  return { stamp: prev, files };
}

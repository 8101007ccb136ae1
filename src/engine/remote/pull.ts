/**
 * Reading a remote: `list --from`, `verify --from [--deep]` and
 * `restore --from [DATE]`.
 *
 * A restore fetches exactly what it needs into a local cache beside the
 * backups, then restores through the local restore (deploy/restore/), so
 * every check, lock, confirmation and the incremental restore are the same:
 *
 *   <folder of the backups>/remotecache/<hash of the URL>/<storage>/
 *     backups/                    a repozo repository: the chain's pieces,
 *                                 its .dat (written from the manifest's lines)
 *                                 and the index of the restored state
 *     blobstore/<oid>.<tid>.blob  every blob file fetched, once (one flat folder,
 *                                 fsynced once; packed files come by ranged GETs
 *                                 of their packs, a run of slices per GET)
 *     blobstoragebackups/<blob folder>.<stamp>/<blob folder>/
 *                                 the generation restored from: hard links
 *                                 into blobstore, with its manifest
 *
 * Every object is fetched into a temp file, checked against the manifest's
 * size and SHA-256, fsynced and renamed; the pieces are then checked against
 * their .dat md5 by the restore itself, as for local backups. What the cache
 * holds is not fetched again: refreshing a dev site restored from the remote
 * before fetches only the new pieces and blob files. A site whose Data.fs is
 * exactly the state of an older generation of the chain (its last
 * transaction that generation's) does not fetch the blob files that
 * generation holds: the incremental restore adds only the new ones. The
 * chain's earlier pieces are still fetched once into the cache (the restore
 * reads the piece the live state ends with, to prove it).
 *
 * The cache does not pile up: once a restore from it succeeded (or a drill
 * of the remote ended), `trimRemoteCache` keeps only the pieces and the .dat
 * of the chain just restored (what the next refresh of a dev site would
 * otherwise fetch again: the full piece is the size of the database) and
 * removes every blob file, blob generation, index and other chain: the
 * restored site holds its blob files itself, and the next refresh does not
 * fetch those (see above). A restore that failed or was cancelled leaves
 * what it fetched, so the next try fetches only the rest. It runs under the
 * lock of the cache's repository (base/lock.ts), which every restore from
 * the cache holds while it reads it, so never while it is in use.
 *
 * `drill --from` (`drillRemote`) fetches a generation as a full restore
 * would (every blob file), drills it as a local drill does (deploy/drill.ts),
 * then trims the cache the same way.
 */

import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { createGunzip } from 'node:zlib';
import { PloneBackupError, checkAbort } from '../base/errors';
import { fileLayer, fsyncDir, tempPath, writeFileAtomic, writeNewFile } from '../base/io';
import type { OperationOptions } from '../base/progress';
import { datName, formatDatLine, indexName, parseDataFileName } from '../repozo/repository';
import { LAYOUT_FILE, blobRelPath, eachAtMost, type BlobLayout } from '../zodb/blobdir';
import { txnEndingAt } from '../zodb/filestorage';
import { MANIFEST, makeDirs } from '../deploy/blobgen';
import type { Deployment, StorageConfig } from '../deploy/deployment';
import { openRestore, type RestoreOptions, type RestoreSession } from '../deploy/restore';
import { drillDeployment, type DrillOptions, type DrillResult } from '../deploy/drill';
import { acquireLock, type Lock } from '../base/lock';
import { RemoteResolver, archiveKey, blobId, blobKey, indexKey, manifestKey, packKey, pieceKey, remoteStamps, spaceOf, type RemoteBlob, type RemoteManifest } from './layout';
import { blobSealer } from './crypt';
import { KIND_ORDER, type Kind } from '../deploy/kinds';
import { downloadVerified, type RemoteTarget } from './target';

// ---------------------------------------------------------------------------
// list

export interface RemoteGenerationView {
  stamp: string;
  full: boolean;
  /** The chain's full stamp. */
  chain: string;
  /** Bytes of Data.fs the piece holds, and of the piece as stored. */
  start: number;
  end: number;
  size: number;
  transactions?: number;
  lastTime?: string;
  lastUser?: string;
  lastDescription?: string;
  blobFiles?: number;
  blobBytes?: number;
  /** Set when the manifest cannot be trusted (REMOTE_BAD's message). */
  problem?: string;
}

export interface RemoteStorageView {
  /** The storage, or for snapshots and zip backups its space (`main/snapshot`, layout.ts). */
  storage: string;
  kind: Kind;
  generations: RemoteGenerationView[];
  /** Older generations there are and were not read (listRemote's `limit`). */
  older?: number;
}

/** Every kind of every storage as spaces on the remote (layout.ts): the storage's own, then its snapshots' and zip backups'. */
function spacesOf(storages: string[]): { storage: string; kind: Kind; space: string }[] {
  return storages.flatMap((storage) => KIND_ORDER.map((kind) => ({ storage, kind, space: spaceOf(storage, kind) })));
}

/**
 * The generations on the remote, storage by storage, oldest first: one
 * listing and one manifest read each; snapshots and zip backups after their
 * storage's backups, when there are some. `limit`: only the newest that many
 * of each space are read, the others counted (`older`).
 */
export async function listRemote(storages: string[], t: RemoteTarget, opts: OperationOptions & { limit?: number } = {}): Promise<RemoteStorageView[]> {
  const out: RemoteStorageView[] = [];
  for (const { kind, space: storage } of spacesOf(storages)) {
    const r = new RemoteResolver(t, storage, opts.signal);
    const generations: RemoteGenerationView[] = [];
    // `limit`: only the newest manifests of each space are read; the rest only counted (one listing).
    const all = await remoteStamps(t, storage, opts.signal);
    const older = opts.limit !== undefined && all.length > opts.limit ? all.length - opts.limit : 0;
    for (const stamp of all.slice(older)) {
      try {
        const m = await r.manifest(stamp);
        if (!m) continue; // deleted since the listing
        const last = m.pieces.at(-1)!;
        generations.push({
          stamp,
          full: m.pieces.length === 1,
          chain: m.full,
          start: last.start,
          end: last.end,
          size: last.size,
          transactions: m.info?.transactions,
          lastTime: m.info?.lastTime,
          lastUser: m.info?.lastUser,
          lastDescription: m.info?.lastDescription,
          blobFiles: m.blobs?.count,
          blobBytes: m.blobs?.bytes,
        });
      } catch (e) {
        if (!PloneBackupError.is(e, 'REMOTE_BAD')) throw e;
        generations.push({ stamp, full: false, chain: '', start: 0, end: 0, size: 0, problem: e.message });
      }
    }
    if (kind === 'backup' || generations.length) out.push({ storage, kind, generations, ...(older ? { older } : {}) });
  }
  return out;
}

// ---------------------------------------------------------------------------
// verify

export interface RemoteVerifyOptions extends OperationOptions {
  /** Read every object back: its SHA-256, and each piece's md5 (uncompressed) against its .dat line. */
  deep?: boolean;
}

export interface RemoteVerifyResult {
  storage: string;
  generations: number;
  objects: number;
  problems: string[];
}

/** Every generation's manifest checked whole, every object it names present with its size (`deep`: its bytes). */
export async function verifyRemote(storages: string[], t: RemoteTarget, opts: RemoteVerifyOptions = {}): Promise<RemoteVerifyResult[]> {
  const out: RemoteVerifyResult[] = [];
  for (const { kind, space: storage } of spacesOf(storages)) {
    const res: RemoteVerifyResult = { storage, generations: 0, objects: 0, problems: [] };
    const r = new RemoteResolver(t, storage, opts.signal);
    // key → what it must be (the first manifest naming it wins; another naming it otherwise is a problem).
    const objects = new Map<string, { size: number; sha256: string; md5?: string; gzip?: boolean }>();
    // pack → the blob files manifests name in it (id → entry).
    const packs = new Map<string, Map<string, RemoteBlob>>();
    const want = (key: string, o: { size: number; sha256: string; md5?: string; gzip?: boolean }, by: string) => {
      const had = objects.get(key);
      if (!had) objects.set(key, o);
      else if (had.size !== o.size || had.sha256 !== o.sha256)
        res.problems.push(`${manifestKey(storage, by)} names ${key} with another size or SHA-256 than another generation does`);
    };
    for (const stamp of await remoteStamps(t, storage, opts.signal)) {
      res.generations++;
      try {
        const m = await r.manifest(stamp);
        if (!m) continue;
        for (const p of m.pieces) want(pieceKey(storage, p.name), { size: p.size, sha256: p.sha256, md5: p.md5, gzip: parseDataFileName(p.name)!.gzip }, stamp);
        if (m.index) want(indexKey(storage, stamp), m.index, stamp);
        if (m.archive) want(archiveKey(storage, m.archive.name), m.archive, stamp);
        for (const a of m.archives ?? []) want(archiveKey(storage, a.name), a, stamp);
        for (const e of (await r.blobs(stamp)).values()) {
          if (e.length === 4) want(blobKey(storage, e[0], e[1]), { size: e[2], sha256: e[3] }, stamp);
          else {
            let p = packs.get(e[4]);
            if (!p) packs.set(e[4], (p = new Map()));
            p.set(blobId(e[0], e[1]), e);
          }
        }
      } catch (e) {
        if (!PloneBackupError.is(e, 'REMOTE_BAD')) throw e;
        res.problems.push(e.message);
      }
    }
    const keys = [...objects.keys()].sort();
    const packIds = [...packs.keys()].sort();
    res.objects = keys.length + packIds.length;
    let done = 0;
    const tick = () => opts.onProgress?.({ phase: `verifying ${storage}`, done: ++done, total: res.objects });
    await eachAtMost(
      keys,
      8,
      async (key) => {
        const o = objects.get(key)!;
        const problem = opts.deep ? await readBack(t, key, o, opts.signal) : await present(t, key, o.size, opts.signal);
        if (problem) res.problems.push(problem);
        tick();
      },
      opts.signal,
    );
    await eachAtMost(
      packIds,
      4,
      async (id) => {
        res.problems.push(...(await checkPack(t, storage, id, [...packs.get(id)!.values()], opts.deep === true, opts.signal)));
        tick();
      },
      opts.signal,
    );
    res.problems.sort();
    if (kind === 'backup' || res.generations) out.push(res);
  }
  return out;
}

/**
 * A pack (layout.ts): there, and long enough for every slice named in it;
 * `deep`: read whole, its SHA-256 its name, and every slice opening to its
 * blob file's size and SHA-256.
 */
async function checkPack(t: RemoteTarget, storage: string, id: string, entries: RemoteBlob[], deep: boolean, signal?: AbortSignal): Promise<string[]> {
  const key = packKey(storage, id);
  const sealer = blobSealer(t);
  let end = 0;
  for (const e of entries) end = Math.max(end, (e[5] ?? 0) + sealer.storedSize(e[2]));
  const h = await t.head(key, signal);
  if (!h) return [`${key} is missing from ${t.url} (it holds ${entries.length} blob file${entries.length === 1 ? '' : 's'})`];
  if (h.size < end) return [`${key} is ${h.size} bytes on ${t.url}, shorter than the ${end} its blob files need`];
  if (!deep) return [];
  let body: Buffer;
  try {
    body = (await t.getRange(key, 0, h.size, signal)) ?? Buffer.alloc(0);
  } catch (e) {
    if (PloneBackupError.is(e, 'REMOTE_BAD')) return [e.message];
    throw e;
  }
  const out: string[] = [];
  for (const e of entries) {
    const at = e[5] ?? 0;
    const what = `blob file ${e[0]}/${e[1]} in ${key} on ${t.url}`;
    try {
      if (!(await openSlice(sealer, storage, e, body, at))) out.push(`The ${what} does not match its SHA-256`);
    } catch (err) {
      if (!PloneBackupError.is(err, 'REMOTE_BAD')) throw err;
      out.push(`The ${what} does not decrypt`);
    }
  }
  // Damage outside every slice (bytes added at the end, say): the pack is no longer what its name says.
  if (!out.length && createHash('sha256').update(body).digest('hex') !== id) out.push(`${key} on ${t.url} does not match its SHA-256 (its name)`);
  return out;
}

/**
 * The blob file `e` from its slice at `at` of a pack's bytes (`body`): its
 * plain bytes when they are its size and SHA-256, else undefined. A slice
 * that does not decrypt is REMOTE_BAD (crypt.ts).
 */
async function openSlice(sealer: ReturnType<typeof blobSealer>, space: string, e: RemoteBlob, body: Buffer, at: number): Promise<Buffer | undefined> {
  const plain = await sealer.open(blobKey(space, e[0], e[1]), body.subarray(at, at + sealer.storedSize(e[2])));
  return plain.length === e[2] && createHash('sha256').update(plain).digest('hex') === e[3] ? plain : undefined;
}

async function present(t: RemoteTarget, key: string, size: number, signal?: AbortSignal): Promise<string | undefined> {
  const h = await t.head(key, signal);
  if (!h) return `${key} is missing from ${t.url}`;
  if (h.size !== size) return `${key} is ${h.size} bytes on ${t.url}, not ${size}`;
  return undefined;
}

async function readBack(t: RemoteTarget, key: string, o: { size: number; sha256: string; md5?: string; gzip?: boolean }, signal?: AbortSignal): Promise<string | undefined> {
  const sha = createHash('sha256');
  const md5 = o.md5 ? createHash('md5') : undefined;
  let size = 0;
  try {
    const body = await t.stream(key, signal);
    // The raw bytes are hashed whatever happens; the inflated ones only while they inflate.
    let zerr: Error | undefined;
    const gunzip = md5 && o.gzip ? createGunzip() : undefined;
    const settled = (events: string[]) =>
      new Promise<void>((r) => {
        const done = () => {
          for (const ev of events) gunzip!.off(ev, done);
          r();
        };
        for (const ev of events) gunzip!.once(ev, done);
      });
    if (gunzip) {
      gunzip.on('error', (e) => (zerr = e));
      gunzip.on('data', (c: Buffer) => md5!.update(c));
    }
    for await (const c of body) {
      size += c.byteLength;
      sha.update(c);
      if (!gunzip) md5?.update(c);
      else if (!zerr && !gunzip.write(c)) await settled(['drain', 'error']);
    }
    if (gunzip && !zerr) {
      const ended = settled(['end', 'error']);
      gunzip.end();
      await ended;
    }
    if (zerr) md5?.update('does not inflate');
  } catch (e) {
    if (PloneBackupError.is(e, 'REMOTE_FAILED') && /NoSuchKey|HTTP 404/.test(e.message)) return `${key} is missing from ${t.url}`;
    // An encrypted object that does not authenticate: a finding, as a wrong SHA-256 is.
    if (PloneBackupError.is(e, 'REMOTE_BAD')) return e.message;
    if (PloneBackupError.is(e)) throw e;
    return `${key} on ${t.url} cannot be read back: ${(e as Error).message}`;
  }
  t.stats.downloaded += size;
  if (size !== o.size) return `${key} is ${size} bytes on ${t.url}, not ${o.size}`;
  if (sha.digest('hex') !== o.sha256) return `${key} on ${t.url} does not match its SHA-256`;
  if (md5 && md5.digest('hex') !== o.md5) return `${key} on ${t.url} does not match its .dat md5`;
  return undefined;
}

// ---------------------------------------------------------------------------
// fetch and restore

/** Held in the cache root while a restore from a remote runs (openRemoteRestore). */
const RESTORE_LOCK = '.plone-backup-restore.lock';

/** The folder of every remote's cache of the storage's deployment (`var/remotecache` beside `var/backups`). */
const remoteCacheRoot = (s: StorageConfig) => path.join(path.dirname(s.dirs.backups), 'remotecache');

/** The local cache of a remote for a storage (of a kind: `<storage>~snapshot`, `~` being no storage name's) (see the header). */
export function remoteCacheDir(s: StorageConfig, url: string, kind: Kind = 'backup'): string {
  return path.join(remoteCacheRoot(s), createHash('sha256').update(url).digest('hex').slice(0, 12), kind === 'backup' ? s.name : `${s.name}~${kind}`);
}

export interface FetchResult {
  storage: string;
  stamp: string;
  /** Objects and bytes that travelled. */
  fetched: number;
  bytes: number;
  /** Blob files not fetched because the live site holds them (the state it is in is a generation of this chain). */
  liveBlobs: number;
  repo: string;
  blobs?: string;
  /** The chain fetched: its full backup's stamp and its pieces' names, up to `stamp`. */
  full: string;
  pieces: string[];
}

export interface FetchOptions extends OperationOptions {
  /** Normalised date (yyyy-mm-dd[-hh[-mm[-ss]]]); undefined: the newest. */
  date?: string;
  /** Leave out the blob files the live state's generation holds (default true; false for a full restore). */
  incremental?: boolean;
  /** Which kind of backups (default: regular backups). */
  kind?: Kind;
}

/** Picks, for every storage, the newest remote generation at the date and fetches what restoring it needs into the cache. */
export async function fetchForRestore(dep: Deployment, t: RemoteTarget, opts: FetchOptions = {}): Promise<FetchResult[]> {
  const out: FetchResult[] = [];
  for (const s of dep.storages) out.push(await fetchStorage(s, t, opts));
  return out;
}

/** Fetches what restoring one storage at `opts.date` (default: its newest generation) needs into the cache, under the cache's lock. */
async function fetchStorage(s: StorageConfig, t: RemoteTarget, opts: FetchOptions): Promise<FetchResult> {
  const repo = path.join(remoteCacheDir(s, t.url, opts.kind), 'backups');
  await fileLayer.mkdir(repo, { recursive: true, mode: 0o700 });
  const lock = await acquireLock(repo, { what: 'fetch from a remote', signal: opts.signal });
  try {
    return await fetchStorageLocked(s, t, opts);
  } finally {
    await lock.release();
  }
}

async function fetchStorageLocked(s: StorageConfig, t: RemoteTarget, opts: FetchOptions): Promise<FetchResult> {
  const kind = opts.kind ?? 'backup';
  const space = spaceOf(s.name, kind);
  const stamps = (await remoteStamps(t, space, opts.signal)).filter((x) => opts.date === undefined || x <= opts.date);
  const stamp = stamps.at(-1);
  if (!stamp) {
    throw new PloneBackupError('NO_BACKUPS', `There is no ${kind === 'backup' ? 'generation' : kind} of ${s.name} on ${t.url}${opts.date ? ` from before ${opts.date}` : ''}.`, {
      hint: opts.date ? 'Pick a later date; `plone-backup list --from URL` shows what is there.' : 'Push one first with `plone-backup push`.',
    });
  }
  const r = new RemoteResolver(t, space, opts.signal);
  const m = (await r.manifest(stamp))!;
  const cache = remoteCacheDir(s, t.url, kind);
  const repo = path.join(cache, 'backups');
  await fileLayer.mkdir(repo, { recursive: true, mode: 0o700 });
  const res: FetchResult = { storage: s.name, stamp, fetched: 0, bytes: 0, liveBlobs: 0, repo, full: m.full, pieces: m.pieces.map((p) => p.name) };
  const fetch = async (key: string, dest: string, o: { size: number; sha256: string }) => {
    const st = await fsp.lstat(dest).catch(() => undefined);
    if (st?.isFile() && st.size === o.size) return; // fetched (and checked) before
    if (st) await fileLayer.rm(dest, { force: true });
    res.bytes += await downloadVerified(t, key, dest, o, 0o600, opts.signal);
    res.fetched++;
    opts.onProgress?.({ phase: `fetching ${space} ${stamp}`, done: res.bytes });
  };
  for (const p of m.pieces) await fetch(pieceKey(space, p.name), path.join(repo, p.name), p);
  if (m.index) await fetch(indexKey(space, stamp), path.join(repo, indexName(stamp)), m.index);
  if (s.blobDir && m.archive) {
    // An archived blob generation: under the name the local restore looks for (<blob folder>.<stamp>.tar[.gz]).
    res.blobs = path.join(cache, 'blobstoragebackups');
    await fileLayer.mkdir(res.blobs, { recursive: true, mode: 0o700 });
    await fetch(archiveKey(space, m.archive.name), path.join(res.blobs, `${path.basename(s.blobDir)}.${m.archive.name}`), m.archive);
  }
  if (s.blobDir && m.archives) {
    // An incremental_blobs chain: its archives under the names the local restore chains (listGenerations),
    // with a .snar beside the full one, which only marks the chain there (a restore reads the archives alone).
    res.blobs = path.join(cache, 'blobstoragebackups');
    await fileLayer.mkdir(res.blobs, { recursive: true, mode: 0o700 });
    const base = path.basename(s.blobDir);
    for (const a of m.archives) await fetch(archiveKey(space, a.name), path.join(res.blobs, `${base}.${a.name}`), a);
    const snar = path.join(res.blobs, `${base}.${m.archives[0]!.name.slice(0, 19)}.snar`);
    if (!(await fsp.lstat(snar).catch(() => undefined))) await writeFileAtomic(snar, '', 0o600);
  }
  // The .dat of the chain, as repozo writes it: rewritten whole (the chain may have grown since the last fetch).
  await writeFileAtomic(path.join(repo, datName(m.full)), m.pieces.map((p) => formatDatLine({ path: path.join(repo, p.name), start: p.start, end: p.end, md5: p.md5 })).join(''));
  if (s.blobDir && m.blobs) {
    const files = await r.blobs(stamp);
    const skip = opts.incremental === false ? undefined : await liveGeneration(s, m, r);
    const store = path.join(cache, 'blobstore');
    await fileLayer.mkdir(store, { recursive: true, mode: 0o700 });
    const todo = [...files.values()].filter((e) => !skip?.has(`${e[0]}.${e[1]}`));
    res.liveBlobs = files.size - todo.length;
    const need: RemoteBlob[] = [];
    for (const e of todo) {
      const st = await fsp.lstat(storePath(store, e)).catch(() => undefined);
      if (st?.isFile() && st.size === e[2]) continue; // fetched (and checked) before
      need.push(e);
    }
    await eachAtMost(
      need.filter((e) => e.length === 4),
      8,
      async (e) => fetch(blobKey(space, e[0], e[1]), storePath(store, e), { size: e[2], sha256: e[3] }),
      opts.signal,
    );
    await fetchPacked(t, space, store, need, res, (done) => opts.onProgress?.({ phase: `fetching ${space} ${stamp}`, done }), opts.signal);
    await fsyncDir(store);
    res.blobs = path.join(cache, 'blobstoragebackups');
    await buildCacheGeneration(res.blobs, path.basename(s.blobDir), store, m, files, new Set(todo.map((e) => `${e[0]}.${e[1]}`)));
  }
  checkAbort(opts.signal);
  return res;
}

/** Where a fetched blob file is kept in the cache: one flat folder (one fsync of it for all). */
const storePath = (store: string, e: RemoteBlob) => path.join(store, `${e[0]}.${e[1]}.blob`);

/**
 * Runs of packed slices to fetch with one ranged GET each: the slices of a
 * pack, by offset, joined while the gap between two is under 1 MiB and the
 * run under 32 MiB (a first restore reads each pack whole; an incremental one
 * only what it needs).
 */
function packRuns(need: RemoteBlob[], storedSize: (n: number) => number): { pack: string; start: number; end: number; items: [RemoteBlob, number][] }[] {
  const byPack = new Map<string, [RemoteBlob, number][]>();
  for (const e of need) {
    if (e.length !== 6) continue;
    let l = byPack.get(e[4]);
    if (!l) byPack.set(e[4], (l = []));
    l.push([e, e[5]]);
  }
  const runs: { pack: string; start: number; end: number; items: [RemoteBlob, number][] }[] = [];
  for (const [pack, items] of byPack) {
    items.sort((a, b) => a[1] - b[1]);
    let run: (typeof runs)[number] | undefined;
    for (const it of items) {
      const end = it[1] + storedSize(it[0][2]);
      if (run && it[1] - run.end < 1 << 20 && end - run.start <= 32 << 20 && it[1] >= run.end) {
        run.end = end;
        run.items.push(it);
      } else {
        run = { pack, start: it[1], end, items: [it] };
        runs.push(run);
      }
    }
  }
  return runs;
}

/**
 * Fetches the packed blob files of `need` (layout.ts): a ranged GET per run
 * of slices (four at a time), each slice opened (decrypted on an encrypted
 * remote), checked against its size and SHA-256, and written into the store
 * through a temp file, fsynced and renamed (the store's folder is fsynced
 * once by the caller). A slice that does not check is REMOTE_BAD and lands
 * nowhere.
 */
async function fetchPacked(
  t: RemoteTarget,
  space: string,
  store: string,
  need: RemoteBlob[],
  res: FetchResult,
  progress: (done: number) => void,
  signal?: AbortSignal,
): Promise<void> {
  const sealer = blobSealer(t);
  await eachAtMost(
    packRuns(need, sealer.storedSize),
    4,
    async (run) => {
      const key = packKey(space, run.pack);
      const body = await t.getRange(key, run.start, run.end, signal);
      if (!body)
        throw new PloneBackupError('REMOTE_BAD', `The remote pack ${key} in ${t.url} is missing; the blob files it held cannot be restored from there.`, {
          path: key,
          hint: 'Push again from a site that still has that backup, or restore another date.',
        });
      res.bytes += body.length;
      res.fetched++;
      await eachAtMost(
        run.items,
        16,
        async ([e, offset]) => {
          const plain = await openSlice(sealer, space, e, body, offset - run.start);
          if (!plain)
            throw new PloneBackupError('REMOTE_BAD', `The blob file ${e[0]}/${e[1]} in the remote pack ${key} in ${t.url} is not what its manifest says; it was not used.`, {
              path: key,
              hint: 'The copy on the remote is damaged: push again from a site that still has that backup, or restore another date.',
            });
          const dest = storePath(store, e);
          const tmp = tempPath(dest, 'fetch');
          try {
            await writeNewFile(tmp, plain, 0o600);
            await fileLayer.rename(tmp, dest);
          } catch (err) {
            await fileLayer.rm(tmp, { force: true });
            throw err;
          }
        },
        signal,
      );
      progress(res.bytes);
    },
    signal,
  );
}

/**
 * The blob files of the generation the live Data.fs is in, when it is one of
 * this chain's: it ends where that generation's piece ends and its last
 * transaction is that generation's. Those files are the live site's already.
 */
async function liveGeneration(s: StorageConfig, m: RemoteManifest, r: RemoteResolver): Promise<Set<string> | undefined> {
  const fh = await fsp.open(s.file, 'r').catch(() => undefined);
  if (!fh) return undefined;
  try {
    const size = (await fh.stat()).size;
    const k = m.pieces.findIndex((p) => p.end === size);
    if (k < 0 || k === m.pieces.length - 1) return undefined;
    const base = await r.manifest(m.pieces[k]!.name.slice(0, 19)).catch(() => undefined);
    const last = await txnEndingAt(fh, size, size);
    if (!base?.blobs || !base.info?.lastTid || !last || last.tid.toString('hex') !== base.info.lastTid || base.full !== m.full) return undefined;
    if (!(await fsp.lstat(s.blobDir!).catch(() => undefined))?.isDirectory()) return undefined;
    return new Set((await r.blobs(base.stamp)).keys());
  } finally {
    await fh.close();
  }
}

/**
 * The dir generation the local restore reads: `<base>.<stamp>/<base>/` with
 * its `.layout`, hard links into the blob store for the files fetched, and
 * its manifest naming every file of the state (a full restore from it then
 * fails with BLOB_MISSING on a file left to the live site, never restores
 * without it). Built under a temp name and renamed into place.
 */
async function buildCacheGeneration(dir: string, base: string, store: string, m: RemoteManifest, files: Map<string, RemoteBlob>, fetched: Set<string>): Promise<void> {
  const layout: BlobLayout = m.blobs!.layout;
  await fileLayer.mkdir(dir, { recursive: true, mode: 0o700 });
  const final = path.join(dir, `${base}.${m.stamp}`);
  const tmp = tempPath(final, 'gen');
  await fileLayer.mkdir(tmp, { mode: 0o700 });
  try {
    const tree = path.join(tmp, base);
    await fileLayer.mkdir(tree, { mode: 0o700 });
    await writeNewFile(path.join(tree, LAYOUT_FILE), layout + '\n', 0o600);
    const rels: [string, number][] = [];
    const links: [string, string][] = [];
    for (const [id, [oid, tid, size]] of files) {
      const rel = blobRelPath(Buffer.from(oid, 'hex'), Buffer.from(tid, 'hex'), layout);
      rels.push([rel, size]);
      if (fetched.has(id)) links.push([path.join(store, `${oid}.${tid}.blob`), rel]);
    }
    await makeDirs(
      tree,
      links.map(([, rel]) => rel),
      0o700,
    );
    await eachAtMost(links, 16, async ([src, rel]) => fileLayer.link(src, path.join(tree, rel)));
    const last = m.pieces.at(-1)!;
    const manifest = { version: 1, stamp: m.stamp, end: last.end, ...(m.info?.lastTid ? { lastTid: m.info.lastTid } : {}), layout, files: rels };
    await writeNewFile(path.join(tmp, MANIFEST), JSON.stringify(manifest), 0o600);
    await fileLayer.rm(final, { recursive: true, force: true });
    await fileLayer.rename(tmp, final);
    await fsyncDir(dir);
  } catch (e) {
    await fileLayer.rm(tmp, { recursive: true, force: true });
    throw e;
  }
}

/**
 * Fetches and opens a restore from the remote: the local restore's session
 * (locks, "is the site running", the plan) over the cache. When the plan of
 * a storage whose live blob files were counted on is no incremental restore
 * after all, the rest of its files are fetched and the plan made again.
 */
export async function openRemoteRestore(dep: Deployment, t: RemoteTarget, opts: RestoreOptions = {}): Promise<{ session: RestoreSession; fetched: FetchResult[] }> {
  // Regular backups, snapshots or zip backups (snapshotrestore, ziprestore --from), each from its space.
  const kind = opts.kind ?? 'backup';
  const fetchOpts = { signal: opts.signal, onProgress: opts.onProgress, log: opts.log, date: opts.date, kind };
  let fetched: FetchResult[] = [];
  // Fetched only once the restore holds every site's lock and knows it stopped (openRestore's prepare):
  // nothing travels for a site that runs. The date: the one asked for, else the newest fetched (the
  // cache may hold newer pieces the remote no longer has).
  const open = (incremental?: boolean) =>
    openRestore(dep, {
      ...opts,
      kind,
      prepare: async () => {
        fetched = await fetchForRestore(dep, t, { ...fetchOpts, incremental });
        return {
          date:
            opts.date ??
            fetched
              .map((f) => f.stamp)
              .sort()
              .at(-1),
        };
      },
      source: (s) => {
        const f = fetched.find((x) => x.storage === s.name)!;
        return { type: 'repository', repo: f.repo, blobs: f.blobs };
      },
    });
  // One restore from a remote into a site at a time, taken before the site's lock: the second waits
  // here for the first (or is told another restore runs), where it would otherwise find the site's
  // lock held by the first and report the site running.
  const held: Lock[] = [];
  let session: RestoreSession;
  try {
    for (const root of [...new Set(dep.storages.map(remoteCacheRoot))].sort()) {
      await fileLayer.mkdir(root, { recursive: true, mode: 0o700 });
      held.push(await acquireLock(root, { what: 'restore from a remote', name: RESTORE_LOCK, waitMs: opts.lockWaitMs, signal: opts.signal }));
    }
    session = await open(opts.incremental);
    const again = fetched.filter((f) => f.liveBlobs > 0 && session.plans.find((p) => p.storage.name === f.storage)?.mode === 'full');
    if (again.length) {
      await session.close();
      session = await open(false);
    }
  } catch (e) {
    for (const l of held.splice(0).reverse()) await l.release();
    throw e;
  }
  const inner = session;
  // Once the restore succeeded, still under the session's lock of each cache: the cache trimmed (see the header).
  const trimmed: RestoreSession = {
    plans: inner.plans,
    keepOld: inner.keepOld,
    async run(more) {
      const results = await inner.run(more);
      for (const f of fetched) await trimRemoteCache(f).catch((e: unknown) => opts.log?.(`The cache ${path.dirname(f.repo)} could not be trimmed: ${(e as Error).message}`));
      return results;
    },
    async close() {
      await inner.close();
      for (const l of held.splice(0).reverse()) await l.release();
    },
  };
  return { session: trimmed, fetched };
}

/**
 * What the cache of a storage keeps after a restore of `f` (see the header):
 * the chain's pieces and its .dat; the blob files, blob generations, indexes
 * and other chains' pieces go. The caller holds the cache's lock.
 */
export async function trimRemoteCache(f: FetchResult): Promise<void> {
  const cache = path.dirname(f.repo);
  for (const dir of ['blobstore', 'blobstoragebackups']) await fileLayer.rm(path.join(cache, dir), { recursive: true, force: true });
  const keep = new Set([...f.pieces, datName(f.full)]);
  for (const e of await fsp.readdir(f.repo, { withFileTypes: true })) {
    // Only what a fetch writes there: repozo's names (pieces, .dat, .index), never the lock.
    if (keep.has(e.name) || !e.isFile() || !(parseDataFileName(e.name) || /^\d{4}(-\d\d){5}\.(dat|index)$/.test(e.name))) continue;
    await fileLayer.rm(path.join(f.repo, e.name), { force: true });
  }
}

export interface RemoteDrillOptions extends DrillOptions {
  /** Every generation on the remote, not only the newest. */
  all?: boolean;
}

/**
 * `drill --from`: for every storage, its newest generation on the remote
 * (`all`: every one, oldest first) fetched into the cache with every blob
 * file, restored into a temporary folder and proved as a local drill does;
 * the cache is trimmed afterwards (see the header).
 */
export async function drillRemote(dep: Deployment, t: RemoteTarget, opts: RemoteDrillOptions = {}): Promise<DrillResult[]> {
  const results: DrillResult[] = [];
  for (const s of dep.storages) {
    const all = await remoteStamps(t, s.name, opts.signal);
    const stamps = opts.all ? all : all.slice(-1);
    if (!stamps.length) {
      // The local drill's own "nothing to drill" result.
      results.push(...(await drillDeployment({ ...dep, storages: [s] }, { ...opts, from: () => ({ repo: t.url, stamps: [] }) })));
      continue;
    }
    let last: FetchResult | undefined;
    for (const stamp of stamps) {
      checkAbort(opts.signal);
      last = await fetchStorage(s, t, { signal: opts.signal, onProgress: opts.onProgress, log: opts.log, date: stamp, incremental: false });
      const f = last;
      results.push(...(await drillDeployment({ ...dep, storages: [s] }, { ...opts, all: false, from: () => ({ repo: f.repo, blobs: f.blobs, stamps: [stamp] }) })));
    }
    const lock = await acquireLock(last!.repo, { what: 'trim the cache of a remote', signal: opts.signal });
    try {
      await trimRemoteCache(last!);
    } finally {
      await lock.release();
    }
  }
  return results;
}

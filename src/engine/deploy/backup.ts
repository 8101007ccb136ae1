/**
 * Backing up a whole deployment: for every storage, the filestorage backup
 * (the engine's repozo backup) and a blob generation with the same stamp,
 * registered together only when both are complete.
 *
 *   backup      incremental when possible (quick by default, as the recipe runs repozo)
 *   fullbackup  a full filestorage backup, into the same folders
 *   snapshot    a full backup into the snapshot folders
 *   zipbackup   one gzip full backup and one blob tar, for carrying a site elsewhere
 *
 * While the site writes and packs: the piece is copied from one open
 * descriptor; its blob set is exactly what its records reference; blob files
 * never change, so linking or copying them later is safe unless a pack
 * removes one. A vanished blob with a replaced or shrunk Data.fs is a pack:
 * everything written so far is discarded and the backup starts over (a few
 * times), else it fails; nothing is ever registered half-made.
 */

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { PloneBackupError, checkAbort, toPloneBackupError } from '../base/errors';
import { prepareBackup, cleanLeftovers, type BackupResult, type PreparedBackup } from '../repozo/backup';
import { openFileStorage, type OpenedStorage } from '../zodb/filestorage';
import { acquireLock, isPrivateFolder, removeOwnEntry } from '../base/lock';
import { readLayout, blobRelPath, statBlobFiles, type BlobLayout } from '../zodb/blobdir';
import { scanBlobRefs } from '../zodb/blobrefs';
import { findChain, listRepository, allChains, datName, indexName, type RepoFile } from '../repozo/repository';
import { chainIsOurs, identify, readOwners, recordOwner, type StorageIdentity } from './owners';
import { isInside, resolveReal } from './paths';
import { exists, fileLayer, isTempName, modesFrom, modesOf, tempPath, fsyncDir, type Modes } from '../base/io';
import type { OperationOptions } from '../base/progress';
import { writeIncrementalDelta, writeIncrementalFull } from '../archive/incremental';
import { buildPoolGeneration, cleanPoolTemps, poolHead, removeGenerations } from './blobpool';
import { BlobVanished, archivePath, buildGeneration, linkableTree, listGenerations, snarPath, soundManifest, type Generation, LATEST, setLatest } from './blobgen';
import { writeTar, type TarEntry } from '../archive/tar';
import type { BlobFormat, Deployment, StorageConfig } from './deployment';
import { KINDS, commandKind, foldersFor, type BackupCommand } from './kinds';
import { runHook } from './hooks';
import { formatStamp, isStamp, nextStamp, parseStamp } from '../zodb/tid';

export interface DeployBackupOptions extends OperationOptions {
  now?: () => Date;
  lockWaitMs?: number;
  /** How many times to start over after a pack removed a blob mid-backup. */
  retries?: number;
}

export interface StorageBackupResult {
  storage: string;
  filestorage: BackupResult;
  /** The blob generation (folder or archive) written, if any. */
  blobGeneration?: string;
  blobFiles?: number;
  linked?: number;
  copied?: number;
  /** Old pieces and generations removed by retention. */
  removed: string[];
  attempts: number;
}

/** Backs up every storage of the deployment (additional ones first, as the recipe does). */
export async function backupDeployment(dep: Deployment, kind: BackupCommand, opts: DeployBackupOptions = {}): Promise<StorageBackupResult[]> {
  if (kind === 'zipbackup' && !dep.settings.enableZipbackup) {
    throw new PloneBackupError('CONFIG_BAD', `Zip backups are not enabled for ${dep.part ? `the [${dep.part.name}] part` : dep.root}.`, {
      path: dep.configFile,
      hint: 'Set enable_zipbackup = true in the part (as collective.recipe.backup wants it for bin/zipbackup).',
    });
  }
  const hook = { command: kind, kind: commandKind(kind), signal: opts.signal, log: opts.log };
  await runHook(dep, { ...hook, phase: 'pre' });
  const out: StorageBackupResult[] = [];
  const ordered = [...dep.storages.filter((s) => s.name !== 'main'), ...dep.storages.filter((s) => s.name === 'main')];
  for (const s of ordered) {
    checkAbort(opts.signal);
    try {
      out.push(await backupStorage(dep, s, kind, opts));
    } catch (e) {
      // Typed, also for what fails before the storage's backup starts (its folder cannot be made).
      throw toPloneBackupError(e);
    }
  }
  await runHook(dep, { ...hook, phase: 'post', stamp: out.find((r) => r.storage === 'main')?.filestorage.stamp ?? out[0]?.filestorage.stamp });
  return out;
}

function isPack(e: unknown): boolean {
  return e instanceof BlobVanished || PloneBackupError.is(e, 'SOURCE_CHANGED');
}

async function replaced(st: OpenedStorage): Promise<boolean> {
  const [a, b] = await Promise.all([st.fh.stat(), fsp.stat(st.path).catch(() => undefined)]);
  return !b || a.ino !== b.ino || a.dev !== b.dev || b.size < st.size;
}

/**
 * A pack renames Data.fs to Data.fs.old and then Data.fs.pack to Data.fs: a
 * backup that opens it in between finds no Data.fs. True when that is what
 * happened (the packed file is there, or Data.fs is back within a moment).
 */
async function packSwapping(e: unknown, file: string): Promise<boolean> {
  if (!PloneBackupError.is(e, 'SOURCE_MISSING') || e.path !== file) return false;
  if (!(await exists(`${file}.pack`)) && !(await exists(`${file}.old`))) return false;
  for (let i = 0; i < 100; i++) {
    if (await exists(file)) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

export async function backupStorage(dep: Deployment, s: StorageConfig, kind: BackupCommand, opts: DeployBackupOptions = {}): Promise<StorageBackupResult> {
  if (dep.settings.onlyBlobs) return backupBlobsOnly(dep, s, kind, opts);
  const { repo, blobs } = foldersFor(s, commandKind(kind));
  // Folders this run creates are removed again if it fails and they stayed empty.
  const fresh: string[] = [];
  for (const d of s.blobDir ? [repo, blobs] : [repo]) if (!(await exists(d))) fresh.push(d);
  // Backup folders made here are no more open than the Data.fs they hold (0700 for a 0600 one).
  await fileLayer.mkdir(repo, { recursive: true, mode: (await modesFrom(s.file)).dir });
  let ok = false;
  let lock: Awaited<ReturnType<typeof acquireLock>> | undefined;
  try {
    // Inside the try: a lock that cannot be written (a full disk) leaves no folder this run made.
    lock = await acquireLock(repo, { what: kind, waitMs: opts.lockWaitMs, signal: opts.signal });
    await cleanLeftovers(repo, opts.log);
    if (s.blobDir) await cleanBlobLeftovers(blobs, path.basename(s.blobDir), repo);
    const retries = opts.retries ?? 3;
    for (let attempt = 1; ; attempt++) {
      try {
        const r = await attemptBackup(dep, s, kind, repo, blobs, opts);
        r.attempts = attempt;
        ok = true;
        return r;
      } catch (e) {
        if (attempt <= retries && (isPack(e) || (await packSwapping(e, s.file)))) {
          opts.log?.(`${s.name}: ${(e as Error).message} Starting over (attempt ${attempt + 1}).`);
          continue;
        }
        // An OS error (a full disk, a permission) reaches callers typed, like ours.
        throw toPloneBackupError(e);
      }
    }
  } finally {
    await lock?.release();
    if (!ok) for (const d of fresh) await fileLayer.rmdir(d).catch(() => undefined); // only when empty
  }
}

/** What one attempt at a storage's backup works with. */
interface Attempt {
  dep: Deployment;
  s: StorageConfig;
  kind: BackupCommand;
  repo: string;
  blobs: string;
  /** Data.fs, opened once: the piece and the blob scan read this descriptor. */
  st: OpenedStorage;
  opts: DeployBackupOptions;
}

/**
 * One attempt: the piece written to temp files, the blob generation of its
 * stamp, both registered (blobs first), then the chain's owner and retention.
 */
async function attemptBackup(dep: Deployment, s: StorageConfig, kind: BackupCommand, repo: string, blobs: string, opts: DeployBackupOptions): Promise<StorageBackupResult> {
  const st = await openFileStorage(s.file);
  try {
    const a: Attempt = { dep, s, kind, repo, blobs, st, opts };
    // Which storage this is, for the owners record and retention (owners.ts).
    const me = await identify(s.file);
    const prepared = await preparePiece(a);
    const result: StorageBackupResult = { storage: s.name, filestorage: prepared.result, removed: [], attempts: 1 };
    await registerPiece(a, prepared, result);
    await recordChainOwner(a, prepared.result, me);
    // Retention runs on every successful run, also one with nothing new: a run
    // killed after registering its backup may not have got to it.
    result.removed = await retain(a, me);
    return result;
  } finally {
    await st.fh.close();
  }
}

/** The filestorage piece and its index, written to temp files (repozo's backup), not yet registered. */
function preparePiece({ dep, s, kind, repo, st, opts }: Attempt): Promise<PreparedBackup> {
  return prepareBackup(
    {
      file: s.file,
      repository: repo,
      full: kind !== 'backup' || dep.settings.full,
      quick: dep.settings.quick,
      gzip: kind === 'zipbackup' ? true : dep.settings.gzip,
      compressLevel: dep.settings.compressLevel,
      collectBlobs: !!s.blobDir,
      now: opts.now,
      signal: opts.signal,
      onProgress: opts.onProgress,
      log: opts.log,
    },
    st,
  );
}

/**
 * Registers the piece, with the blob generation of its stamp when the storage
 * has blobs. On any failure the piece's temp files go; a blob file missing
 * from a site that was not packed is BLOB_MISSING (a pack starts over).
 */
async function registerPiece(a: Attempt, prepared: PreparedBackup, result: StorageBackupResult): Promise<void> {
  let job: BlobJob | undefined;
  try {
    if (!a.s.blobDir) {
      await prepared.commit();
      return;
    }
    job = await planBlobs(a, { ...a.s, blobDir: a.s.blobDir }, prepared);
    if (job) await register(await writeBlobs(job), prepared, result);
  } catch (e) {
    await prepared.discard();
    throw await unlessPacked(e, a.st, job);
  }
}

/** A blob file vanished: a pack (SOURCE_CHANGED, the caller starts over) unless Data.fs is the same file, then BLOB_MISSING. */
async function unlessPacked(e: unknown, st: OpenedStorage, job: BlobJob | undefined): Promise<unknown> {
  if (!(e instanceof BlobVanished) || (await replaced(st))) return e;
  // Data.fs was not packed: the blob is really missing from the live site (all of them named).
  if (job) await checkBlobsExist(job.s.blobDir, job.needed, st, job.opts.signal);
  return new PloneBackupError('BLOB_MISSING', `${e.path} is referenced by Data.fs but missing; the backup was not made.`, {
    path: e.path,
    hint: 'Run `plone-backup check` to list the missing blobs; restore them or repair the site first.',
  });
}

/**
 * Which storage wrote a new chain: retention deletes only its own (owners.ts).
 * The backup is registered and whole by now: a record that cannot be written
 * (a full disk) leaves the chain to be known by its first transaction.
 */
async function recordChainOwner({ s, repo, st, opts }: Attempt, res: BackupResult, me: StorageIdentity): Promise<void> {
  if (res.action !== 'full' || !res.stamp) return;
  try {
    const present = new Set((await listRepository(repo)).files.filter((f) => f.full).map((f) => f.stamp));
    await recordOwner(repo, res.stamp, me, present, modesOf(st.mode).file);
  } catch (e) {
    opts.log?.(`${s.name}: could not record which storage wrote ${res.stamp} (${(e as Error).message})`);
  }
}

/** Retention of the kind's `keep` setting (0 keeps everything, as in the recipe); what it removed. */
async function retain({ dep, s, kind, repo, blobs, opts }: Attempt, me: StorageIdentity): Promise<string[]> {
  const keep = dep.settings[KINDS[commandKind(kind)].keepSetting];
  if (keep === 0) return [];
  return applyRetention(repo, blobs, s.blobDir ? path.basename(s.blobDir) : undefined, keep, me, opts.log, dep.root);
}

/** A blob generation to write: the state it belongs to, the files it lists, and how it is kept. */
interface BlobJob {
  dep: Deployment;
  kind: BackupCommand;
  s: StorageConfig & { blobDir: string };
  blobs: string;
  /** The blob folder's name (blobstorage), the first part of every generation's name. */
  base: string;
  layout: BlobLayout;
  format: BlobFormat;
  /** The generations there before this one, oldest first. */
  gens: Generation[];
  modes: Modes;
  stamp: string;
  end: number;
  lastTid: string | undefined;
  /** The files the generation lists: all of its state's, or (with `parent`) those it adds to that pool generation's. */
  needed: string[];
  /** Their sizes, looked up (without following a link) before anything was written. */
  sizes: Map<string, number>;
  parent?: PoolParent;
  /** incremental_blobs: the chain's .snar and whether this is a delta (none: a plain archive, see incrementalTarget). */
  chained?: { snar: string; delta: boolean };
  opts: DeployBackupOptions;
}

/**
 * The blob generation a piece needs: of its stamp, listing exactly the files
 * of its state (for the pool, those added to the generation of the piece it
 * continues). Undefined when there is nothing to do: nothing new in Data.fs
 * and the newest piece has its generation.
 */
async function planBlobs(a: Attempt, s: StorageConfig & { blobDir: string }, prepared: PreparedBackup): Promise<BlobJob | undefined> {
  const res = prepared.result;
  const { layout } = await readLayout(s.blobDir);
  const base = path.basename(s.blobDir);
  const gens = await listGenerations(a.blobs, base);
  // The newest registered piece (the new one is still a temp file).
  const newest = findChain((await listRepository(a.repo)).files).at(-1)?.stamp;
  let stamp = res.stamp!;
  let lastTid = res.lastTid;
  if (res.action === 'none') {
    // Nothing new in Data.fs: the newest piece must still have its generation.
    if (!newest) throw new PloneBackupError('NO_BACKUPS', `No backup in ${a.repo}.`, { path: a.repo });
    if (gens.some((g) => g.stamp === newest)) return undefined;
    stamp = newest;
    lastTid = undefined;
  }
  // The piece this incremental continues.
  const continues = res.action === 'incremental' ? newest : undefined;
  const format = blobFormatFor(a.dep, a.kind);
  const parent = format === 'pool' ? await poolParent(res, continues, gens, layout) : undefined;
  const needed = parent
    ? [...new Set(prepared.blobs.map((r) => blobRelPath(r.oid, r.tid, layout)))].sort()
    : await neededBlobs(a.st, res, continues, prepared.blobs, gens, layout, a.opts.signal);
  // Every needed file is looked up first, without following a link (a blob
  // replaced by a link to a private file must not land in a backup): a
  // missing one fails here, before anything is written, all of them named.
  const sizes = await checkBlobsExist(s.blobDir, needed, a.st, a.opts.signal);
  const modes = modesOf(a.st.mode);
  const chained = isIncremental(format) ? await incrementalTarget(a.repo, a.blobs, base, stamp, res.action === 'full', modes.dir) : undefined;
  return { dep: a.dep, kind: a.kind, s, blobs: a.blobs, base, layout, format, gens, modes, stamp, end: res.end, lastTid, needed, sizes, parent, chained, opts: a.opts };
}

function isIncremental(format: BlobFormat): boolean {
  return format === 'incremental' || format === 'incremental.gz';
}

/**
 * A blob generation (or archive) written under a temp name: `commit` puts it
 * in place, `discard` takes it back (also once committed: its piece could not
 * be registered), `finish` does what follows the piece's registration.
 */
interface PendingBlobs {
  final: string;
  /** The files of its state. */
  files: number;
  linked?: number;
  copied?: number;
  commit(): Promise<void>;
  discard(): Promise<void>;
  finish?(): Promise<void>;
}

/** Writes the generation of `j` in its format: the pool, an incremental_blobs archive, a tree or a plain archive. */
async function writeBlobs(j: BlobJob): Promise<PendingBlobs> {
  if (j.format === 'pool') return poolGeneration(j);
  if (j.chained) return incrementalArchive(j, j.chained);
  if (j.format === 'dir') return treeGeneration(j);
  return plainArchive(j);
}

/**
 * Registers a blob generation and (unless only_blobs) its piece: the
 * generation first, so a crash between the two leaves a generation without a
 * piece (the next run removes it), never a piece without its blobs. A failure
 * takes the generation back.
 */
async function register(pending: PendingBlobs, piece: PreparedBackup | undefined, result: StorageBackupResult): Promise<void> {
  try {
    await pending.commit();
    await piece?.commit();
  } catch (e) {
    await pending.discard();
    throw e;
  }
  await pending.finish?.();
  result.blobGeneration = pending.final;
  result.blobFiles = pending.files;
  if (pending.linked !== undefined) {
    result.linked = pending.linked;
    result.copied = pending.copied;
  }
}

/** What the pool and the tree builders both take from a job: where, which state, how, and the progress. */
function generationInputs(j: BlobJob) {
  return {
    blobDir: j.s.blobDir,
    layout: j.layout,
    backupDir: j.blobs,
    stamp: j.stamp,
    end: j.end,
    lastTid: j.lastTid,
    linkFromLive: j.dep.settings.hardLinkFirstCopy,
    modes: j.modes,
    signal: j.opts.signal,
    onProgress: (done: number, total: number): void => j.opts.onProgress?.({ phase: `blobs of ${j.s.name}`, done, total }),
  };
}

/**
 * The pool (blobpool.ts): only the files the pool lacks are copied, linked
 * from the newest tree generation when switching from trees.
 */
async function poolGeneration(j: BlobJob): Promise<PendingBlobs> {
  const linkFrom = j.parent ? undefined : (await linkableTree(j.gens))?.content;
  const gen = await buildPoolGeneration({
    ...generationInputs(j),
    files: j.needed,
    parent: j.parent,
    linkFrom,
  });
  return {
    final: gen.final,
    files: gen.manifest.count ?? j.needed.length,
    linked: gen.linked,
    copied: gen.copied,
    commit: () => gen.commit(),
    discard: () => gen.discard(),
  };
}

/** The recipe's tree (blobgen.ts): files the newest tree has are hard links to it, new ones copies. */
async function treeGeneration(j: BlobJob): Promise<PendingBlobs> {
  const gen = await buildGeneration({
    ...generationInputs(j),
    needed: j.needed,
    previous: await linkableTree(j.gens),
  });
  return {
    final: gen.final,
    files: j.needed.length,
    linked: gen.linked,
    copied: gen.copied,
    commit: () => gen.commit(),
    async discard() {
      await gen.discard();
      // Committed already (its name was free before: buildGeneration checked).
      await fileLayer.rm(gen.final, { recursive: true, force: true }).catch(() => undefined);
      // `latest` pointed at the generation just removed: back to the newest one left.
      await resetLatest(j.blobs, j.base).catch(() => undefined);
    },
  };
}

/** An archive: zipbackup's, or archive_blob's (.tar, .tar.gz) as the recipe names them. */
async function plainArchive(j: BlobJob): Promise<PendingBlobs> {
  const archive = await writeBlobArchive(j.s.blobDir, j.blobs, j.base, j.stamp, j.needed, j.sizes, j.modes, { gzip: j.format.endsWith('.gz'), signal: j.opts.signal });
  return {
    final: archive.final,
    files: j.needed.length,
    async commit() {
      await fileLayer.rename(archive.temp, archive.final);
      await fsyncDir(j.blobs);
    },
    async discard() {
      await fileLayer.rm(archive.temp, { force: true });
      await fileLayer.rm(archive.final, { force: true });
    },
    async finish() {
      // The recipe points `latest` at the newest timestamped archive too (not in an incremental chain).
      if (j.kind !== 'zipbackup' && !isIncremental(j.format)) await setLatest(j.blobs, path.basename(archive.final)).catch(() => undefined);
    },
  };
}

/** incremental_blobs: a full archive with its .snar, or a delta on top of the chain. */
async function incrementalArchive(j: BlobJob, chained: { snar: string; delta: boolean }): Promise<PendingBlobs> {
  const gzip = j.format === 'incremental.gz';
  const w = {
    tar: archivePath(j.blobs, j.base, j.stamp, { delta: chained.delta, gzip }),
    snar: chained.snar,
    root: j.s.blobDir,
    files: await withLayoutFile(j.s.blobDir, j.needed),
    gzip,
    signal: j.opts.signal,
    mode: j.modes.file,
  };
  const pending = await (chained.delta ? writeIncrementalDelta(w) : writeIncrementalFull(w)).catch((e: unknown) => {
    throw (e as NodeJS.ErrnoException).code === 'ENOENT' ? new BlobVanished((e as NodeJS.ErrnoException).path ?? j.s.blobDir) : e;
  });
  // The archive, then the piece, then the .snar: a crash before the last
  // leaves the previous .snar, so the next delta takes these files again
  // (a duplicate), never a .snar naming files no registered archive holds.
  return {
    final: w.tar,
    files: j.needed.length,
    commit: () => pending.commitArchive(),
    async discard() {
      await pending.discard();
      await fileLayer.rm(w.tar, { force: true });
    },
    finish: () => pending.commitSnapshot(),
  };
}

/**
 * The blob part of a backup's result in words, for the CLI and the demo:
 * "blobstorage.<stamp>.json: 2,310 files, 10 new in the pool", or for a tree
 * "… (8 copied, 2,300 linked)".
 */
export function blobSummary(r: StorageBackupResult): string {
  if (!r.blobGeneration) return '';
  const name = path.basename(r.blobGeneration);
  const files = `${r.blobFiles ?? 0} files`;
  if (r.linked === undefined) return `${name}: ${files}`;
  if (name.endsWith('.json')) return `${name}: ${files}, ${r.copied! + r.linked} new in the pool`;
  return `${name}: ${files} (${r.copied} copied, ${r.linked} linked)`;
}

/**
 * The pool generation a new incremental's generation adds to: the one made
 * with the piece it continues, when it describes exactly the state the piece
 * starts from and every generation it adds to is there and sound (heads
 * only: small reads, as many as the chain is long, none per blob file).
 * Undefined otherwise: the new generation then lists all of its files.
 */
interface PoolParent {
  stamp: string;
  count: number;
  bytes: number;
}

async function poolParent(res: BackupResult, continues: string | undefined, gens: Generation[], layout: BlobLayout): Promise<PoolParent | undefined> {
  if (res.action !== 'incremental' || !continues) return undefined;
  const byStamp = new Map(gens.filter((g) => g.kind === 'pool' && g.stamp).map((g) => [g.stamp!, g]));
  const g = byStamp.get(continues);
  const head = g && (await poolHead(g));
  if (!head || head.stamp !== continues || head.end !== res.start || head.layout !== layout) return undefined;
  for (let h: typeof head | undefined = head; h.parent !== undefined;) {
    const p = byStamp.get(h.parent);
    const ph = p && (await poolHead(p));
    if (!ph || ph.layout !== layout || ph.end > h.end) return undefined;
    h = ph;
  }
  return { stamp: continues, count: head.count ?? 0, bytes: head.bytes ?? 0 };
}

/**
 * The blob files the backed-up state needs: for an incremental, the previous
 * generation's list (when it describes exactly the state the piece continues)
 * plus the new piece's blob records; otherwise everything the state's
 * records reference, by a scan of Data.fs up to the backed-up end.
 */
async function neededBlobs(
  st: OpenedStorage,
  res: BackupResult,
  continues: string | undefined,
  pieceBlobs: { oid: Buffer; tid: Buffer }[],
  gens: Generation[],
  layout: BlobLayout,
  signal?: AbortSignal,
): Promise<string[]> {
  const rels = new Set<string>();
  let from = 0;
  if (res.action === 'incremental' && continues) {
    // Only the generation of the very piece continued describes the state at res.start
    // (an older chain's generation may end at the same byte by chance).
    const g = gens.find((x) => x.stamp === continues);
    // A manifest that is not sound describes nothing: the state is scanned instead.
    const m = g && (await soundManifest(g));
    if (m && m.stamp === continues && m.end === res.start && m.layout === layout) {
      for (const [rel] of m.files) rels.add(rel);
      from = res.start;
    }
  }
  if (res.action === 'full') from = res.end; // the piece's own records are all of the state
  if (from < res.end && res.action !== 'full') {
    const scan = await scanBlobRefs(st, 4, res.action === 'none' ? res.end : res.start, signal);
    for (const r of scan.refs) rels.add(blobRelPath(r.oid, r.tid, layout));
  }
  for (const r of pieceBlobs) rels.add(blobRelPath(r.oid, r.tid, layout));
  return [...rels].sort();
}

/**
 * Fails with BLOB_MISSING (or a pack restart) before anything is written when
 * a needed file is absent, and with UNSAFE when one is a link; returns the sizes.
 */
async function checkBlobsExist(blobDir: string, needed: string[], st: OpenedStorage, signal?: AbortSignal): Promise<Map<string, number>> {
  const { missing, sizes } = await statBlobFiles(blobDir, needed, signal);
  if (missing.length === 0) return sizes;
  if (await replaced(st)) throw new BlobVanished(path.join(blobDir, missing[0]!));
  throw new PloneBackupError(
    'BLOB_MISSING',
    `${missing.length} blob file${missing.length > 1 ? 's' : ''} referenced by ${st.path} ${missing.length > 1 ? 'are' : 'is'} missing (first: ${path.join(blobDir, missing[0]!)}); the backup was not made.`,
    { path: path.join(blobDir, missing[0]!), hint: 'Run `plone-backup check` to list them; restore them or repair the site first.' },
  );
}

/** The files an archive of the blob folder holds: its `.layout` (when it is a plain file) and the needed blob files. */
async function withLayoutFile(blobDir: string, needed: string[]): Promise<string[]> {
  const lst = await fsp.lstat(path.join(blobDir, '.layout')).catch(() => undefined);
  return [...(lst?.isFile() ? ['.layout'] : []), ...needed];
}

/**
 * only_blobs (the recipe's option for sites whose Data.fs is backed up some
 * other way, e.g. RelStorage): a blob generation stamped with the time of the
 * backup, holding exactly the blob files Data.fs references (it is read for
 * that, never copied), with no filestorage piece. incremental_blobs chains
 * continue on the newest .snar (a full archive with `full` or a fullbackup).
 * Retention keeps the newest `keep` generations (a chain counts once), and
 * with keep_blob_days those younger than that many days, as the recipe.
 */
async function backupBlobsOnly(dep: Deployment, s: StorageConfig, kind: BackupCommand, opts: DeployBackupOptions): Promise<StorageBackupResult> {
  const { blobs } = foldersFor(s, commandKind(kind));
  if (!s.blobDir)
    throw new PloneBackupError('CONFIG_BAD', `only_blobs is set but ${s.name} has no blobstorage.`, { path: dep.configFile, hint: 'Set blob_storage, or unset only_blobs.' });
  const withBlobs = { ...s, blobDir: s.blobDir };
  await fileLayer.mkdir(blobs, { recursive: true, mode: (await modesFrom(s.file)).dir });
  const lock = await acquireLock(blobs, { what: kind, waitMs: opts.lockWaitMs, signal: opts.signal });
  try {
    await cleanBlobLeftovers(blobs, path.basename(s.blobDir));
    const st = await openFileStorage(s.file);
    try {
      const job = await planBlobsOnly(dep, withBlobs, kind, blobs, st, opts);
      const filestorage: BackupResult = {
        action: 'none',
        reason: 'only_blobs: the filestorage is not backed up here',
        stamp: job.stamp,
        written: [],
        removed: [],
        start: job.end,
        end: job.end,
        transactions: 0,
        lastTid: job.lastTid,
      };
      const result: StorageBackupResult = { storage: s.name, filestorage, removed: [], attempts: 1 };
      await register(await writeBlobs(job), undefined, result);
      const full = kind !== 'backup' || dep.settings.full;
      result.removed = await retainBlobsOnly(
        blobs,
        job.base,
        dep.settings[KINDS[commandKind(kind)].keepSetting],
        full ? 0 : dep.settings.keepBlobDays,
        parseStamp(job.stamp).getTime(),
      );
      return result;
    } finally {
      await st.fh.close();
    }
  } finally {
    await lock.release();
  }
}

/** only_blobs' generation: stamped now (after the newest one), every file Data.fs references, no parent. */
async function planBlobsOnly(
  dep: Deployment,
  s: StorageConfig & { blobDir: string },
  kind: BackupCommand,
  blobs: string,
  st: OpenedStorage,
  opts: DeployBackupOptions,
): Promise<BlobJob> {
  const base = path.basename(s.blobDir);
  const gens = await listGenerations(blobs, base);
  const newest = gens.filter((g) => g.stamp).at(-1)?.stamp;
  let stamp = formatStamp((opts.now ?? (() => new Date()))());
  if (newest && stamp <= newest) stamp = nextStamp(newest);
  const { layout } = await readLayout(s.blobDir);
  const scan = await scanBlobRefs(st, 4, st.size, opts.signal);
  const needed = [...new Set(scan.refs.map((r) => blobRelPath(r.oid, r.tid, layout)))].sort();
  const sizes = await checkBlobsExist(s.blobDir, needed, st, opts.signal);
  const format = blobFormatFor(dep, kind);
  let chained: BlobJob['chained'];
  if (isIncremental(format)) {
    // The newest chain's full archive (listGenerations gives it `archives` only when its .snar is there).
    const chain = kind !== 'backup' || dep.settings.full ? undefined : gens.filter((g) => !g.delta && g.archives?.length === 1).at(-1);
    chained = { snar: snarPath(blobs, base, chain?.stamp ?? stamp), delta: chain !== undefined };
  }
  const modes = modesOf(st.mode);
  return { dep, kind, s, blobs, base, layout, format, gens, modes, stamp, end: scan.end, lastTid: scan.lastTid?.toString('hex'), needed, sizes, chained, opts };
}

/**
 * Blob-only retention, as the recipe's cleanup: the newest `keep` backups (an
 * incremental chain, its full archive with its deltas and .snar, counts as
 * one); with `days`, older ones are removed only once older than that (by
 * their stamp, against the stamp of this run), and at least the newest is
 * kept. keep 0 keeps everything.
 */
async function retainBlobsOnly(blobs: string, base: string, keep: number, days: number, nowMs: number): Promise<string[]> {
  if (keep === 0 && days === 0) return [];
  const gens = (await listGenerations(blobs, base)).filter((g) => g.stamp);
  // Backups: a full (dir, archive, chain's full) with the deltas after it.
  const backups: Generation[][] = [];
  for (const g of gens) {
    if (g.delta && backups.length) backups.at(-1)!.push(g);
    else backups.push([g]);
  }
  // With keep_blob_days the recipe keeps at least the newest and goes by age.
  const keepN = days ? 1 : keep;
  const cutoff = nowMs - days * 86_400_000;
  const doomed: Generation[] = [];
  const heads: Generation[] = [];
  for (const b of backups.slice(0, Math.max(0, backups.length - keepN))) {
    if (days && parseStamp(b[0]!.stamp!).getTime() >= cutoff) continue;
    if ((b[0]!.kind === 'dir' || b[0]!.kind === 'pool') && !(await isOurGeneration(b[0]!))) continue;
    doomed.push(...b);
    heads.push(b[0]!);
  }
  const removed = await removeGenerations(blobs, base, doomed);
  // An incremental_blobs chain's .snar goes with its full archive (once the archives are gone).
  for (const g of heads) {
    const snar = snarPath(blobs, base, g.stamp!);
    if (await exists(snar)) {
      await fileLayer.rm(snar, { force: true });
      removed.push(snar);
    }
  }
  return removed;
}

/**
 * Where an incremental_blobs archive of `stamp` goes, as the recipe decides
 * (copyblobs.find_snapshot_archive): with a full filestorage backup, a full
 * archive and a new .snar of that stamp; with an incremental one, a delta on
 * the .snar of its chain's full backup; undefined when that .snar is not there
 * (incremental_blobs enabled in the middle of a chain): then a plain archive,
 * and incrementals start with the next full backup.
 */
async function incrementalTarget(repo: string, blobs: string, base: string, stamp: string, full: boolean, dirMode: number): Promise<{ snar: string; delta: boolean } | undefined> {
  await fileLayer.mkdir(blobs, { recursive: true, mode: dirMode });
  if (full) return { snar: snarPath(blobs, base, stamp), delta: false };
  const chainFull = findChain((await listRepository(repo)).files)[0]?.stamp;
  if (!chainFull || chainFull === stamp) return { snar: snarPath(blobs, base, stamp), delta: false };
  const snar = snarPath(blobs, base, chainFull);
  if (
    !(await fsp.lstat(snar).then(
      (st) => st.isFile(),
      () => false,
    ))
  )
    return undefined;
  return { snar, delta: true };
}

/**
 * How a backup command keeps its blobs: zipbackup always one .tar (as the
 * recipe's zipbackup, archive_blob forced); a snapshot as configured but never
 * incremental (the recipe's snapshot_main turns incremental_blobs off).
 */
export function blobFormatFor(dep: Deployment, kind: BackupCommand): BlobFormat {
  if (kind === 'zipbackup') return 'tar';
  const f = dep.settings.blobFormat;
  if (kind === 'snapshot') return f === 'incremental' ? 'tar' : f === 'incremental.gz' ? 'tar.gz' : f;
  return f;
}

async function writeBlobArchive(
  blobDir: string,
  dest: string,
  base: string,
  stamp: string,
  needed: string[],
  sizes: Map<string, number>,
  modes: Modes,
  o: { gzip: boolean; signal?: AbortSignal },
) {
  const signal = o.signal;
  await fileLayer.mkdir(dest, { recursive: true, mode: modes.dir });
  const final = archivePath(dest, base, stamp, { gzip: o.gzip });
  const temp = tempPath(final, 'tar');
  const entries: TarEntry[] = [];
  const dirs = new Set<string>();
  const layoutFile = path.join(blobDir, '.layout');
  const addDir = (d: string) => {
    if (d === '.' || dirs.has(d)) return;
    addDir(path.posix.dirname(d));
    dirs.add(d);
    entries.push({ name: `./${d}/`, size: 0, mode: modes.dir, mtime: Date.now() / 1000 });
  };
  // collective.recipe.backup's layout (`tar -C blobstorage .`), so its ziprestore
  // (`tar xf ARCHIVE -C var/blobstorage`) restores it too.
  entries.push({ name: './', size: 0, mode: modes.dir, mtime: Date.now() / 1000 });
  const lst = await fsp.lstat(layoutFile).catch(() => undefined);
  if (lst?.isFile()) entries.push({ name: './.layout', source: layoutFile, size: lst.size, mode: modes.file, mtime: lst.mtimeMs / 1000 });
  const now = Date.now() / 1000;
  for (const rel of needed) {
    addDir(path.posix.dirname(rel));
    const size = sizes.get(rel);
    if (size === undefined) throw new BlobVanished(path.join(blobDir, rel));
    // ZODB's blob files are read-only; in the archive as such, within Data.fs's modes.
    entries.push({ name: `./${rel}`, source: path.join(blobDir, rel), size, mode: modes.file & 0o444, mtime: now });
  }
  try {
    await writeTar(temp, entries, { signal, mode: modes.file, gzip: o.gzip });
  } catch (e) {
    await fileLayer.rm(temp, { force: true });
    throw e;
  }
  return { temp, final };
}

/**
 * Keeps the newest `keep` full backups with their incrementals, and the blob
 * generations and archives from the oldest kept full onwards. Runs only after
 * the new backup is complete; orders by the stamp in the names, never mtime.
 *
 * Only chains that the storage `me` wrote count and go (see owners.ts): a
 * backup folder shared with another site by a configuration keeps that
 * site's chains, whatever `keep` says. `home`: the site's folder.
 */
export async function applyRetention(
  repo: string,
  blobs: string,
  base: string | undefined,
  keep: number,
  me: StorageIdentity,
  log?: (m: string) => void,
  home?: string,
): Promise<string[]> {
  const removed: string[] = [];
  const { files } = await listRepository(repo);
  const owners = await readOwners(repo);
  const atHome = home !== undefined && isInside(await resolveReal(home), await resolveReal(repo));
  const chains: RepoFile[][] = [];
  const foreign: RepoFile[][] = [];
  for (const c of allChains(files)) ((await chainIsOurs(repo, c[0]!, owners, me, atHome)) ? chains : foreign).push(c);
  if (foreign.length) log?.(`kept ${foreign.length} backup chain${foreign.length > 1 ? 's' : ''} in ${repo} that ${me.file} did not write (first: ${foreign[0]![0]!.name})`);
  if (chains.length === 0) return removed;
  const foreignStamps = new Set(foreign.flat().map((f) => f.stamp));
  // Also with no chain too many: what a run killed while it deleted old chains
  // left (incrementals of a full that is gone, its .dat and .index, its blob
  // generations) is older than the oldest full and restores nothing.
  const trimming = chains.length > keep;
  const oldestKept = chains[Math.max(0, chains.length - keep)]![0]!.stamp;
  for (const f of files) {
    if (f.stamp >= oldestKept || foreignStamps.has(f.stamp)) continue;
    for (const n of [f.name, indexName(f.stamp), ...(f.full ? [datName(f.stamp)] : [])]) {
      try {
        await fileLayer.rm(path.join(repo, n));
        removed.push(path.join(repo, n));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
    }
  }
  // A .dat or .index whose piece is gone (a run killed while it deleted them).
  for (const n of await fsp.readdir(repo)) {
    const m = /^(\d{4}(?:-\d\d){5})\.(dat|index)$/.exec(n);
    if (m && m[1]! < oldestKept && !foreignStamps.has(m[1]!)) {
      await fileLayer.rm(path.join(repo, n), { force: true });
      removed.push(path.join(repo, n));
    }
  }
  if (base) {
    const doomed: Generation[] = [];
    for (const g of await listGenerations(blobs, base)) {
      if (g.stamp && g.stamp < oldestKept && !foreignStamps.has(g.stamp) && (trimming || (await isOurGeneration(g)))) doomed.push(g);
    }
    removed.push(...(await removeGenerations(blobs, base, doomed)));
    // The .snar of an incremental_blobs chain goes with the chain's full archive.
    for (const n of await fsp.readdir(blobs).catch(() => [] as string[])) {
      const stamp = n.startsWith(`${base}.`) && n.endsWith('.snar') ? n.slice(base.length + 1, -5) : undefined;
      if (stamp && isStamp(stamp) && stamp < oldestKept && !foreignStamps.has(stamp) && trimming) {
        await fileLayer.rm(path.join(blobs, n), { force: true });
        removed.push(path.join(blobs, n));
      }
    }
  }
  if (removed.length) log?.(`removed ${removed.length} files and folders of backups older than ${oldestKept}`);
  return removed;
}

/** A generation we wrote: a dir or pool generation with a sound manifest (one that is not sound is never ours to delete). */
async function isOurGeneration(g: Generation): Promise<boolean> {
  return (await soundManifest(g)) !== undefined;
}

/**
 * Removes temp generations of killed runs, and a newest generation whose piece was never registered.
 * Temps only in a private folder, never following links (see cleanLeftovers).
 */
/** Our temp files, and (with `repo`) generations newer than every piece there: what a killed run left. */
async function cleanBlobLeftovers(blobs: string, base: string, repo?: string): Promise<void> {
  let names: string[];
  try {
    names = await fsp.readdir(blobs);
  } catch {
    return;
  }
  if (await isPrivateFolder(blobs)) for (const n of names) if (isTempName(n)) await removeOwnEntry(blobs, n);
  await cleanPoolTemps(blobs, base);
  if (repo === undefined) return;
  const { files } = await listRepository(repo);
  const newestPiece = files.at(-1)?.stamp ?? '';
  const doomed: Generation[] = [];
  for (const g of await listGenerations(blobs, base)) {
    // Ours (a manifest, or an archive: nothing else writes one newer than every piece).
    if (g.stamp && g.stamp > newestPiece && ((g.kind !== 'dir' && g.kind !== 'pool') || (await isOurGeneration(g)))) doomed.push(g);
  }
  if (doomed.length === 0) return;
  await removeGenerations(blobs, base, doomed);
  await resetLatest(blobs, base);
}

/** Points `latest` at the newest dir generation left (or removes it when there is none). */
async function resetLatest(blobs: string, base: string): Promise<void> {
  const cur = await fsp.lstat(path.join(blobs, LATEST)).catch(() => undefined);
  if (cur && !cur.isSymbolicLink()) return;
  const newest = (await listGenerations(blobs, base)).filter((g) => g.kind === 'dir').at(-1);
  if (newest) await setLatest(blobs, newest.name);
  else await fileLayer.rm(path.join(blobs, LATEST), { force: true });
}

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
import { BlobVanished, buildGeneration, listGenerations, snarPath, readManifest, readManifestHead, type Generation, type Manifest, LATEST, setLatest } from './blobgen';
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
  const lock = await acquireLock(repo, { what: kind, waitMs: opts.lockWaitMs, signal: opts.signal });
  try {
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
    await lock.release();
    if (!ok) for (const d of fresh) await fileLayer.rmdir(d).catch(() => undefined); // only when empty
  }
}

async function attemptBackup(dep: Deployment, s: StorageConfig, kind: BackupCommand, repo: string, blobs: string, opts: DeployBackupOptions): Promise<StorageBackupResult> {
  const st = await openFileStorage(s.file);
  try {
    // Which storage this is, for the owners record and retention (owners.ts).
    const me = await identify(s.file);
    const full = kind !== 'backup' || dep.settings.full;
    const prepared = await prepareBackup(
      {
        file: s.file,
        repository: repo,
        full,
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
    const res = prepared.result;
    const result: StorageBackupResult = { storage: s.name, filestorage: res, removed: [], attempts: 1 };
    // Retention runs on every successful run, also one with nothing new: a run
    // killed after registering its backup may not have got to it.
    const retain = async () => {
      const keep = dep.settings[KINDS[commandKind(kind)].keepSetting];
      // keep = 0 keeps everything (as in the recipe).
      if (keep === 0) return;
      result.removed = await applyRetention(repo, blobs, s.blobDir ? path.basename(s.blobDir) : undefined, keep, me, opts.log, dep.root);
    };
    let needed: string[] | undefined;
    try {
      if (s.blobDir) {
        const { layout } = await readLayout(s.blobDir);
        const base = path.basename(s.blobDir);
        let stamp = res.stamp;
        let end = res.end;
        let lastTid = res.lastTid;
        if (res.action === 'none') {
          // Nothing new in Data.fs: the newest piece must still have its generation.
          const { files } = await listRepository(repo);
          const newest = findChain(files).at(-1);
          if (!newest) throw new PloneBackupError('NO_BACKUPS', `No backup in ${repo}.`, { path: repo });
          const gens = await listGenerations(blobs, base);
          if (gens.some((g) => g.stamp === newest.stamp)) {
            await retain();
            return result;
          }
          stamp = newest.stamp;
          end = res.end;
          lastTid = undefined;
        }
        // The piece this incremental continues: the newest registered one (the new piece is still a temp file).
        const continues = res.action === 'incremental' ? findChain((await listRepository(repo)).files).at(-1)?.stamp : undefined;
        const gens = await listGenerations(blobs, base);
        const format = blobFormatFor(dep, kind);
        const modes = modesOf(st.mode);
        if (format === 'pool') {
          needed = await backupIntoPool({
            dep,
            s: { ...s, blobDir: s.blobDir },
            st,
            res,
            prepared,
            continues,
            gens,
            blobs,
            base,
            layout,
            stamp: stamp!,
            end,
            lastTid,
            modes,
            result,
            opts,
          });
        } else {
          needed = await neededBlobs(st, res, continues, prepared.blobs, blobs, base, layout, opts.signal);
          // Files are linked from the newest dir generation, unless its manifest is not sound.
          let previous = [...gens].reverse().find((g) => g.kind === 'dir');
          if (previous && (await readManifestHead(previous).catch(() => null)) === null) previous = undefined;
          // Every needed file is looked up first, without following a link (a blob
          // replaced by a link to a private file must not land in a backup): a
          // missing one fails here, before anything is written, all of them named.
          const sizes = await checkBlobsExist(s.blobDir, needed, st, opts.signal);
          const chained =
            format === 'incremental' || format === 'incremental.gz' ? await incrementalTarget(repo, blobs, base, stamp!, res.action === 'full', modes.dir) : undefined;
          if (chained) {
            // incremental_blobs: a full archive with its .snar, or a delta on top of the chain.
            const files = await withLayoutFile(s.blobDir, needed);
            const w = {
              tar: chained.tar + (format === 'incremental.gz' ? '.gz' : ''),
              snar: chained.snar,
              root: s.blobDir,
              files,
              gzip: format === 'incremental.gz',
              signal: opts.signal,
              mode: modes.file,
            };
            const pending = await (chained.delta ? writeIncrementalDelta(w) : writeIncrementalFull(w)).catch((e: unknown) => {
              throw (e as NodeJS.ErrnoException).code === 'ENOENT' ? new BlobVanished((e as NodeJS.ErrnoException).path ?? s.blobDir!) : e;
            });
            try {
              // The archive, then the piece, then the .snar: a crash before the last
              // leaves the previous .snar, so the next delta takes these files again
              // (a duplicate), never a .snar naming files no registered archive holds.
              await pending.commitArchive();
              await prepared.commit();
            } catch (e) {
              await pending.discard();
              await fileLayer.rm(w.tar, { force: true });
              throw e;
            }
            await pending.commitSnapshot();
            result.blobGeneration = w.tar;
            result.blobFiles = needed.length;
          } else if (format !== 'dir') {
            // An archive: zipbackup's, or archive_blob's (.tar, .tar.gz) as the recipe names them.
            const archive = await writeBlobArchive(s.blobDir, blobs, base, stamp!, needed, sizes, modes, { gzip: format.endsWith('.gz'), signal: opts.signal });
            try {
              // The archive first, as a generation: a crash between the two leaves an
              // archive without a piece (the next run removes it), never a piece without blobs.
              await fileLayer.rename(archive.temp, archive.final);
              await fsyncDir(blobs);
              await prepared.commit();
            } catch (e) {
              await fileLayer.rm(archive.temp, { force: true });
              await fileLayer.rm(archive.final, { force: true });
              throw e;
            }
            // The recipe points `latest` at the newest timestamped archive too (not in an incremental chain).
            if (kind !== 'zipbackup' && format !== 'incremental' && format !== 'incremental.gz') await setLatest(blobs, path.basename(archive.final)).catch(() => undefined);
            result.blobGeneration = archive.final;
            result.blobFiles = needed.length;
          } else {
            const gen = await buildGeneration({
              blobDir: s.blobDir,
              layout,
              backupDir: blobs,
              stamp: stamp!,
              end,
              lastTid,
              needed,
              previous,
              linkFromLive: dep.settings.hardLinkFirstCopy,
              modes,
              signal: opts.signal,
              onProgress: (done, total) => opts.onProgress?.({ phase: `blobs of ${s.name}`, done, total }),
            });
            try {
              // Generation first: a crash between the two renames leaves a generation
              // without a piece, which the next run removes, never a piece without blobs.
              await gen.commit();
              await prepared.commit();
            } catch (e) {
              await gen.discard();
              await fileLayer.rm(gen.final, { recursive: true, force: true }).catch(() => undefined);
              // `latest` pointed at the generation just removed: back to the newest one left.
              await resetLatest(blobs, base).catch(() => undefined);
              throw e;
            }
            result.blobGeneration = gen.final;
            result.blobFiles = needed.length;
            result.linked = gen.linked;
            result.copied = gen.copied;
          }
        }
      } else {
        await prepared.commit();
      }
    } catch (e) {
      await prepared.discard();
      if (e instanceof BlobVanished && !(await replaced(st))) {
        // Data.fs was not packed: the blob is really missing from the live site (all of them named).
        if (needed && s.blobDir) await checkBlobsExist(s.blobDir, needed, st, opts.signal);
        throw new PloneBackupError('BLOB_MISSING', `${e.path} is referenced by Data.fs but missing; the backup was not made.`, {
          path: e.path,
          hint: 'Run `plone-backup check` to list the missing blobs; restore them or repair the site first.',
        });
      }
      throw e;
    }
    if (res.action === 'full' && res.stamp) {
      // Which storage wrote this chain: retention deletes only its own (owners.ts).
      // The backup is registered and whole by now: a record that cannot be
      // written (a full disk) leaves the chain to be known by its first transaction.
      try {
        const present = new Set((await listRepository(repo)).files.filter((f) => f.full).map((f) => f.stamp));
        await recordOwner(repo, res.stamp, me, present, modesOf(st.mode).file);
      } catch (e) {
        opts.log?.(`${s.name}: could not record which storage wrote ${res.stamp} (${(e as Error).message})`);
      }
    }
    await retain();
    return result;
  } finally {
    await st.fh.close();
  }
}

/**
 * The blob part of a backup in the pool (blobpool.ts): only the new piece's
 * files when the piece it continues has a sound pool generation, else all of
 * the state's; the generation committed first, then the piece. Returns the
 * files the generation lists.
 */
async function backupIntoPool(a: {
  dep: Deployment;
  s: StorageConfig & { blobDir: string };
  st: OpenedStorage;
  res: BackupResult;
  prepared: PreparedBackup;
  continues: string | undefined;
  gens: Generation[];
  blobs: string;
  base: string;
  layout: BlobLayout;
  stamp: string;
  end: number;
  lastTid: string | undefined;
  modes: Modes;
  result: StorageBackupResult;
  opts: DeployBackupOptions;
}): Promise<string[]> {
  const { dep, s, st, res, prepared, continues, gens, blobs, base, layout, stamp, end, lastTid, modes, result, opts } = a;
  const parent = await poolParent(res, continues, gens, layout);
  const needed = parent
    ? [...new Set(prepared.blobs.map((r) => blobRelPath(r.oid, r.tid, layout)))].sort()
    : await neededBlobs(st, res, continues, prepared.blobs, blobs, base, layout, opts.signal);
  await checkBlobsExist(s.blobDir, needed, st, opts.signal);
  // Switching from dir generations: their files are linked, not copied again.
  const newestDir = parent ? undefined : [...gens].reverse().find((g) => g.kind === 'dir');
  const linkFrom = newestDir && (await soundManifest(newestDir)) ? newestDir.content : undefined;
  const gen = await buildPoolGeneration({
    blobDir: s.blobDir,
    layout,
    backupDir: blobs,
    stamp,
    end,
    lastTid,
    files: needed,
    parent,
    linkFrom,
    linkFromLive: dep.settings.hardLinkFirstCopy,
    modes,
    signal: opts.signal,
    onProgress: (done, total) => opts.onProgress?.({ phase: `blobs of ${s.name}`, done, total }),
  });
  try {
    // Generation first: a crash between the two renames leaves a generation
    // without a piece, which the next run removes, never a piece without blobs.
    await gen.commit();
    await prepared.commit();
  } catch (e) {
    await gen.discard();
    throw e;
  }
  result.blobGeneration = gen.final;
  result.blobFiles = gen.manifest.count;
  result.linked = gen.linked;
  result.copied = gen.copied;
  return needed;
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
async function poolParent(
  res: BackupResult,
  continues: string | undefined,
  gens: Generation[],
  layout: BlobLayout,
): Promise<{ stamp: string; count: number; bytes: number } | undefined> {
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
  blobBackups: string,
  base: string,
  layout: BlobLayout,
  signal?: AbortSignal,
): Promise<string[]> {
  const rels = new Set<string>();
  let from = 0;
  if (res.action === 'incremental' && continues) {
    // Only the generation of the very piece continued describes the state at res.start
    // (an older chain's generation may end at the same byte by chance).
    const g = (await listGenerations(blobBackups, base)).find((x) => x.stamp === continues);
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
  const blobDir = s.blobDir;
  const modes = await modesFrom(s.file);
  await fileLayer.mkdir(blobs, { recursive: true, mode: modes.dir });
  const lock = await acquireLock(blobs, { what: kind, waitMs: opts.lockWaitMs, signal: opts.signal });
  try {
    const base = path.basename(blobDir);
    await cleanBlobLeftovers(blobs, base);
    const gens = await listGenerations(blobs, base);
    const newest = gens.filter((g) => g.stamp).at(-1)?.stamp;
    let stamp = formatStamp((opts.now ?? (() => new Date()))());
    if (newest && stamp <= newest) stamp = nextStamp(newest);
    const st = await openFileStorage(s.file);
    let needed: string[];
    let end: number;
    let lastTid: string | undefined;
    try {
      const { layout } = await readLayout(blobDir);
      const scan = await scanBlobRefs(st, 4, st.size, opts.signal);
      needed = [...new Set(scan.refs.map((r) => blobRelPath(r.oid, r.tid, layout)))].sort();
      end = scan.end;
      lastTid = scan.lastTid?.toString('hex');
      await checkBlobsExist(blobDir, needed, st, opts.signal);
      const filestorage: BackupResult = {
        action: 'none',
        reason: 'only_blobs: the filestorage is not backed up here',
        stamp,
        written: [],
        removed: [],
        start: end,
        end,
        transactions: 0,
        lastTid,
      };
      const result: StorageBackupResult = { storage: s.name, filestorage, removed: [], attempts: 1 };
      const format = blobFormatFor(dep, kind);
      const full = kind !== 'backup' || dep.settings.full;
      if (format === 'incremental' || format === 'incremental.gz') {
        const gzip = format === 'incremental.gz';
        // The newest chain's full archive (listGenerations gives it `archives` only when its .snar is there).
        const chain = full ? undefined : gens.filter((g) => !g.delta && g.archives?.length === 1).at(-1);
        const snar = snarPath(blobs, base, chain?.stamp ?? stamp);
        const files = await withLayoutFile(blobDir, needed);
        const w = {
          tar: path.join(blobs, `${base}.${stamp}${chain ? '.delta' : ''}.tar${gzip ? '.gz' : ''}`),
          snar,
          root: blobDir,
          files,
          gzip,
          signal: opts.signal,
          mode: modes.file,
        };
        const pending = await (chain ? writeIncrementalDelta(w) : writeIncrementalFull(w));
        await pending.commit();
        result.blobGeneration = w.tar;
      } else if (format === 'pool') {
        // Each a full list of the state (only_blobs reads the whole Data.fs anyway); only new files are copied.
        const gen = await buildPoolGeneration({
          blobDir,
          layout,
          backupDir: blobs,
          stamp,
          end,
          lastTid,
          files: needed,
          linkFromLive: dep.settings.hardLinkFirstCopy,
          modes: modesOf(st.mode),
          signal: opts.signal,
        });
        await gen.commit();
        result.blobGeneration = gen.final;
        result.linked = gen.linked;
        result.copied = gen.copied;
      } else if (format !== 'dir') {
        const sizes = (await statBlobFiles(blobDir, needed, opts.signal)).sizes;
        const archive = await writeBlobArchive(blobDir, blobs, base, stamp, needed, sizes, modesOf(st.mode), { gzip: format === 'tar.gz', signal: opts.signal });
        await fileLayer.rename(archive.temp, archive.final);
        await fsyncDir(blobs);
        if (kind !== 'zipbackup') await setLatest(blobs, path.basename(archive.final)).catch(() => undefined);
        result.blobGeneration = archive.final;
      } else {
        let previous = [...gens].reverse().find((g) => g.kind === 'dir');
        if (previous && (await readManifestHead(previous).catch(() => null)) === null) previous = undefined;
        const gen = await buildGeneration({
          blobDir,
          layout,
          backupDir: blobs,
          stamp,
          end,
          lastTid,
          needed,
          previous,
          linkFromLive: dep.settings.hardLinkFirstCopy,
          modes: modesOf(st.mode),
          signal: opts.signal,
        });
        await gen.commit();
        result.blobGeneration = gen.final;
        result.linked = gen.linked;
        result.copied = gen.copied;
      }
      result.blobFiles = needed.length;
      result.removed = await retainBlobsOnly(blobs, base, dep.settings[KINDS[commandKind(kind)].keepSetting], full ? 0 : dep.settings.keepBlobDays, parseStamp(stamp).getTime());
      return result;
    } finally {
      await st.fh.close();
    }
  } finally {
    await lock.release();
  }
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
async function incrementalTarget(
  repo: string,
  blobs: string,
  base: string,
  stamp: string,
  full: boolean,
  dirMode: number,
): Promise<{ tar: string; snar: string; delta: boolean } | undefined> {
  await fileLayer.mkdir(blobs, { recursive: true, mode: dirMode });
  if (full) return { tar: path.join(blobs, `${base}.${stamp}.tar`), snar: snarPath(blobs, base, stamp), delta: false };
  const chainFull = findChain((await listRepository(repo)).files)[0]?.stamp;
  if (!chainFull || chainFull === stamp) return { tar: path.join(blobs, `${base}.${stamp}.tar`), snar: snarPath(blobs, base, stamp), delta: false };
  const snar = snarPath(blobs, base, chainFull);
  if (
    !(await fsp.lstat(snar).then(
      (st) => st.isFile(),
      () => false,
    ))
  )
    return undefined;
  return { tar: path.join(blobs, `${base}.${stamp}.delta.tar`), snar, delta: true };
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
  const final = path.join(dest, `${base}.${stamp}.tar${o.gzip ? '.gz' : ''}`);
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

/** A generation's manifest when it has a sound one; one that is not sound counts as none. */
async function soundManifest(g: Generation): Promise<Manifest | undefined> {
  try {
    return await readManifest(g);
  } catch (e) {
    if (PloneBackupError.is(e, 'MANIFEST_BAD')) return undefined;
    throw e;
  }
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

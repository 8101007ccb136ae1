/**
 * The blob pool: blob backups whose cost follows what changed, not the size
 * of the site. Our own deployments' default (a buildout's recipe layout stays
 * what the buildout asks for: blobgen.ts).
 *
 *   blobstoragebackups/
 *     blobstorage.pool/.layout                     the pool's layout (the live blobstorage's)
 *     blobstorage.pool/0x00/…/0x2a/<tid>.blob      each blob file once, by its (oid, tid),
 *                                                  however many generations hold it
 *     blobstorage.2026-01-03-10-00-00.json         a generation: a manifest naming its files
 *
 * A hard-link tree per generation costs a link per blob file at every backup
 * (at 200,000 blob files, longer than rsync); here a generation is one small
 * file. The manifest of the generation made with a full filestorage backup
 * lists every blob file its state references. The one made with an
 * incremental backup names the generation of the piece it continues as its
 * `parent` and lists only the blob files of the new piece's records: ZODB
 * gives every new revision (and every undo) a file of its own tid, so these
 * are new, and the parent's files with them are exactly the new state's.
 * When the continued piece has no sound pool generation (the first backup,
 * a dir generation before it, a run after a pack), the generation lists all
 * of its files instead.
 *
 * Writing: the new files into the pool (a temp name in their folder, fsync,
 * rename; a file already there is the same file, as blob files never change),
 * then the manifest (temp, fsync, rename): a reader sees a whole generation
 * or none. Deleting: the manifests first, then `sweepPool` removes the pool
 * files no manifest names any more (also what a killed run left there).
 *
 * Reading is as hostile as for every manifest: capped, checked entry by entry
 * (blob paths of the layout only, so inside the pool), parents strictly older
 * (following them ends) and present, the totals in the head matching what the
 * chain names.
 */

import { constants as fsc, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { PloneBackupError } from '../base/errors';
import { type BlobLayout, BLOB_TMP_DIR, LAYOUT_FILE, eachAtMost, listBlobFiles, notABlobFile, readLayout, statBlobFiles } from '../zodb/blobdir';
import { type Modes, PRIVATE_MODES, copyRegularFile, exists, fileLayer, fsyncDir, isTempName, linkRegularFile, tempPath, writeNewFile } from '../base/io';
import { removeDeadTemps } from '../base/lock';
import { BlobVanished, type BuildResult, type Generation, type GenerationInputs, type Manifest, listGenerations, makeDirs, manifestBad, readManifest, soundHead } from './blobgen';

/** The pool folder of the blob folder named `base` in the backup folder `backupDir`. */
export function poolDir(backupDir: string, base: string): string {
  return path.join(backupDir, `${base}.pool`);
}

/** The manifest of the pool generation `stamp`. */
export function poolManifestPath(backupDir: string, base: string, stamp: string): string {
  return path.join(backupDir, `${base}.${stamp}.json`);
}

/** The blob folder's name a generation belongs to (`blobstorage` of `blobstorage.<STAMP>.json`). */
function baseOf(gen: Generation): string {
  return gen.name.slice(0, gen.name.length - `.${gen.stamp ?? gen.number}${gen.kind === 'pool' ? '.json' : ''}`.length);
}

/**
 * What a chain of pool manifests holds, resolved one generation after the
 * other: a listing walks a chain oldest first, and each generation's parent
 * is the one before, so the files are extended in place instead of being
 * gathered again for every generation (a chain of 50 incrementals on 200,000
 * blob files is read once, not 50 times). The map a call returns is valid
 * until the next call.
 */
export class PoolResolver {
  private readonly byStamp: Map<string, Generation>;
  private last?: { stamp: string; end: number; layout: BlobLayout; files: Map<string, number>; absent: Set<string> };

  /** `gens`: the generations of the folder (listGenerations); `onDisk`: look every file up in the pool, once. */
  constructor(
    gens: Generation[],
    private readonly onDisk = false,
  ) {
    this.byStamp = new Map(gens.filter((g) => g.kind === 'pool' && g.stamp).map((g) => [g.stamp!, g]));
  }

  /** The layout of the generation resolved last. */
  get layout(): BlobLayout | undefined {
    return this.last?.layout;
  }

  /**
   * The files `gen` holds (relative path → size). With `onDisk`, those that
   * are not in the pool as regular files are left out (the comparison with
   * the state then names them), and a link there is UNSAFE.
   */
  async files(gen: Generation): Promise<Map<string, number>> {
    const own = await readManifest(gen);
    if (!own) throw manifestBad(gen.path, 'it is missing');
    const last = this.last;
    // Newest first: the generation, its parent, …, up to the one that lists
    // all, or to the one resolved last time (extended in place).
    const chain: { gen: Generation; m: Manifest }[] = [{ gen, m: own }];
    for (let m = own; m.parent !== undefined && m.parent !== last?.stamp;) {
      const p = this.byStamp.get(m.parent);
      if (!p) throw manifestBad(chain.at(-1)!.gen.path, `its parent generation ${m.parent} is missing`);
      const pm = await readManifest(p);
      if (!pm) throw manifestBad(p.path, 'it is missing');
      chain.push({ gen: p, m: pm });
      m = pm;
    }
    const top = chain.at(-1)!.m;
    const extend = top.parent !== undefined && last !== undefined && top.parent === last.stamp;
    const files = extend ? last.files : new Map<string, number>();
    const absent = extend ? last.absent : new Set<string>();
    let end = extend ? last.end : 0;
    let layout = extend ? last.layout : top.layout;
    this.last = undefined; // half-extended maps are never reused after a failure
    for (let i = chain.length - 1; i >= 0; i--) {
      const { gen: g, m } = chain[i]!;
      if (m.layout !== layout) throw manifestBad(g.path, `its layout (${m.layout}) is not its parent's (${layout})`);
      if (m.end < end) throw manifestBad(g.path, 'it ends before its parent');
      for (const [rel, size] of m.files) files.set(rel, size);
      if (this.onDisk && g.content) {
        const { missing, sizes } = await statBlobFiles(
          g.content,
          m.files.map(([r]) => r),
        );
        for (const r of missing) absent.add(r);
        for (const [rel, size] of m.files) if (sizes.has(rel) && sizes.get(rel) !== size) absent.add(rel);
      }
      if (files.size !== m.count) throw manifestBad(g.path, `it counts ${m.count} files, but with its parents it names ${files.size}`);
      end = m.end;
      layout = m.layout;
    }
    this.last = { stamp: own.stamp, end, layout, files, absent };
    if (!this.onDisk || absent.size === 0) return files;
    return new Map([...files].filter(([r]) => !absent.has(r)));
  }
}

/**
 * The files a generation holds: a pool generation's with its parents', a dir
 * generation's from its manifest when it has one, else by listing its tree.
 */
export async function generationFiles(gen: Generation, layout: BlobLayout): Promise<Map<string, number>> {
  if (gen.kind === 'pool') return new PoolResolver(await listGenerations(path.dirname(gen.path), baseOf(gen))).files(gen);
  const m = await readManifest(gen);
  if (m) return new Map(m.files);
  if (gen.kind !== 'dir' || !gen.content) return new Map();
  const { files } = await listBlobFiles(gen.content, layout);
  return new Map(files.map((f) => [f.rel, f.size]));
}

/** The head of a pool generation (what it describes, its parent and totals), undefined when it is not sound. */
export async function poolHead(gen: Generation): Promise<Omit<Manifest, 'files'> | undefined> {
  return gen.kind === 'pool' ? soundHead(gen) : undefined;
}

export interface PoolBuildOptions extends GenerationInputs {
  files: string[];
  parent?: { stamp: string; count: number; bytes: number };
  /** A dir generation's tree to hard-link files from (switching from the recipe layout). */
  linkFrom?: string;
}

/**
 * Puts blob files into a pool, and takes back what it put there when the
 * run fails, so that a failed backup changes nothing: the pool folder when
 * it made it, else the files it placed and the folders made for them.
 */
class PoolFiller {
  readonly added: string[] = [];
  linked = 0;
  copied = 0;
  private missing: string[] = [];
  private madePool = false;

  constructor(
    readonly pool: string,
    private readonly opts: PoolBuildOptions,
    private readonly modes: Modes,
  ) {}

  /** Makes the pool (with its .layout) if there is none; refuses one of another layout. */
  async open(): Promise<void> {
    this.madePool = !(await exists(this.pool));
    await fileLayer.mkdir(this.pool, { recursive: true, mode: this.modes.dir });
    const layoutFile = path.join(this.pool, LAYOUT_FILE);
    if (!(await exists(layoutFile))) {
      const tmp = tempPath(layoutFile, 'layout');
      await writeNewFile(tmp, this.opts.layout + '\n', this.modes.file);
      await fileLayer.rename(tmp, layoutFile);
      return;
    }
    const { layout } = await readLayout(this.pool);
    if (layout !== this.opts.layout) {
      throw new PloneBackupError('CONFIG_BAD', `The blob pool ${this.pool} holds the ${layout} layout, but ${this.opts.blobDir} is ${this.opts.layout}.`, {
        path: this.pool,
        hint: 'Back up into another folder, or set "blobFormat": "dir" for this deployment.',
      });
    }
  }

  /** Places every file of `wanted` the pool lacks; returns every file's size. */
  async fill(wanted: string[]): Promise<Map<string, number>> {
    // What the pool already has (an earlier chain's, or a run killed after copying) is the same file.
    const { missing, sizes } = await statBlobFiles(this.pool, wanted, this.opts.signal);
    this.missing = missing;
    if (!missing.length) return sizes;
    await fileLayer.mkdir(path.join(this.pool, BLOB_TMP_DIR), { recursive: true, mode: this.modes.dir });
    await makeDirs(this.pool, missing, this.modes.dir);
    let done = wanted.length - missing.length;
    await eachAtMost(
      missing,
      16,
      async (rel) => {
        sizes.set(rel, await this.place(rel));
        this.opts.onProgress?.(++done, wanted.length);
      },
      this.opts.signal,
    );
    // The new files' folders: their entries durable before a manifest names them.
    const dirs = [...new Set(missing.map((r) => path.join(this.pool, path.posix.dirname(r))))];
    await eachAtMost(dirs, 16, (d) => fsyncDir(d), this.opts.signal);
    return sizes;
  }

  /**
   * One file into the pool: built in the pool's tmp/ (one folder to clean
   * after a killed run, never walked as blobs) as a hard link to a tree
   * generation's (or the live) file, else a copy of the live file, fsynced;
   * then renamed into place. Returns its size.
   */
  private async place(rel: string): Promise<number> {
    const dst = path.join(this.pool, rel);
    const tmp = tempPath(path.join(this.pool, BLOB_TMP_DIR, path.posix.basename(rel)), 'blob');
    try {
      if (!(await this.linkInto(rel, tmp))) {
        await this.copyInto(rel, tmp);
        this.copied++;
      } else this.linked++;
      await fileLayer.rename(tmp, dst);
    } catch (e) {
      await fileLayer.rm(tmp, { force: true });
      throw e;
    }
    this.added.push(rel);
    return (await fsp.lstat(dst)).size;
  }

  private async linkInto(rel: string, tmp: string): Promise<boolean> {
    for (const from of [this.opts.linkFrom, this.opts.linkFromLive ? this.opts.blobDir : undefined]) {
      if (!from) continue;
      try {
        // Anything but a plain file there: the live file is copied instead.
        if ('st' in (await linkRegularFile(path.join(from, rel), tmp))) return true;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code !== 'ENOENT' && code !== 'EXDEV' && code !== 'EPERM' && code !== 'EMLINK') throw e;
      }
    }
    return false;
  }

  private async copyInto(rel: string, tmp: string): Promise<void> {
    const src = path.join(this.opts.blobDir, rel);
    try {
      // Never through a link: a blob swapped for a link to a private file must not land in a backup.
      await copyRegularFile(src, tmp, fsc.COPYFILE_FICLONE | fsc.COPYFILE_EXCL, notABlobFile, this.modes.file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new BlobVanished(src);
      throw e;
    }
    // A pool file serves every later generation: on disk before its name is.
    const fh = await fileLayer.open(tmp, fsc.O_RDONLY);
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  }

  /** Removes what this run added (see the class comment). */
  async takeBack(): Promise<void> {
    if (this.madePool) {
      await fileLayer.rm(this.pool, { recursive: true, force: true });
      return;
    }
    for (const rel of this.added) await fileLayer.rm(path.join(this.pool, rel), { force: true });
    // The folders made for the new files, where they are empty again (rmdir refuses the others).
    const dirs = new Set<string>();
    for (const rel of this.missing) for (let d = path.posix.dirname(rel); d !== '.'; d = path.posix.dirname(d)) dirs.add(d);
    for (const d of [...dirs].sort((a, b) => b.length - a.length)) await fileLayer.rmdir(path.join(this.pool, d)).catch(() => undefined);
  }
}

/**
 * Writes the pool generation of `stamp`: the blob files in `files` that the
 * pool lacks (from `linkFrom`, a dir generation holding them, else from the
 * live blobstorage), then its manifest under a temp name; `commit()` renames
 * it into place, `discard()` takes everything back (also once committed: its
 * piece could not be registered). With `parent`, `files` are those added to
 * the parent's.
 */
export async function buildPoolGeneration(opts: PoolBuildOptions): Promise<BuildResult> {
  const modes = opts.modes ?? PRIVATE_MODES;
  const base = path.basename(opts.blobDir);
  const final = poolManifestPath(opts.backupDir, base, opts.stamp);
  if (await exists(final)) {
    throw new PloneBackupError('WOULD_OVERWRITE', `The blob generation ${final} already exists.`, { path: final, hint: 'Remove it or wait a second.' });
  }
  const filler = new PoolFiller(poolDir(opts.backupDir, base), opts, modes);
  const temp = tempPath(final, 'gen');
  let manifest: Manifest;
  try {
    await filler.open();
    const wanted = [...new Set(opts.files)].sort();
    const sizes = await filler.fill(wanted);
    const files: [string, number][] = wanted.map((rel) => [rel, sizes.get(rel)!]);
    const bytes = files.reduce((n, [, size]) => n + size, 0);
    // `files` last: readManifestHead parses what comes before it alone.
    manifest = {
      version: 2,
      stamp: opts.stamp,
      end: opts.end,
      lastTid: opts.lastTid,
      layout: opts.layout,
      parent: opts.parent?.stamp,
      count: (opts.parent?.count ?? 0) + files.length,
      bytes: (opts.parent?.bytes ?? 0) + bytes,
      files,
    };
    await writeNewFile(temp, JSON.stringify(manifest), modes.file);
  } catch (e) {
    await filler.takeBack().catch(() => undefined);
    throw e;
  }
  let state: 'built' | 'committed' | 'discarded' = 'built';
  return {
    temp,
    final,
    linked: filler.linked,
    copied: filler.copied,
    bytes: manifest.bytes!,
    manifest,
    async commit() {
      if (state !== 'built') return;
      await fileLayer.rename(temp, final);
      state = 'committed';
      await fsyncDir(opts.backupDir);
    },
    async discard() {
      if (state === 'discarded') return;
      await fileLayer.rm(state === 'committed' ? final : temp, { force: true });
      state = 'discarded';
      await filler.takeBack();
    },
  };
}

/**
 * Removes blob generations (tree folders, archives, pool manifests) given
 * oldest first, as listGenerations lists them: newest first, so that a pool
 * generation goes before the one it adds to and a run killed in between never
 * leaves one whose parent is gone; then, when pool generations were among
 * them, the pool files no remaining manifest names. Returns what it removed.
 */
export async function removeGenerations(backupDir: string, base: string, gens: readonly Generation[], signal?: AbortSignal): Promise<string[]> {
  const removed: string[] = [];
  for (const g of [...gens].reverse()) {
    await fileLayer.rm(g.path, { recursive: true, force: true });
    removed.push(g.path);
  }
  if (gens.some((g) => g.kind === 'pool')) removed.push(...(await sweepPool(backupDir, base, signal)));
  return removed;
}

/** Removes what killed runs left in the pool: temp files (of dead processes only) in it and in its tmp/. */
export async function cleanPoolTemps(backupDir: string, base: string): Promise<void> {
  const pool = poolDir(backupDir, base);
  await removeDeadTemps(pool);
  await removeDeadTemps(path.join(pool, BLOB_TMP_DIR));
}

/**
 * Removes the pool files that no generation's manifest names any more (after
 * generations were deleted; also what killed runs left: temp files, files
 * copied for a manifest never written), and the folders that become empty.
 * Runs under the backup folder's lock, after the manifests are gone: a
 * generation being read keeps its files. While a manifest cannot be read, or
 * names a parent that is gone, nothing is removed (nothing is deleted on a
 * guess); returns the files removed.
 */
export async function sweepPool(backupDir: string, base: string, signal?: AbortSignal): Promise<string[]> {
  const pool = poolDir(backupDir, base);
  if (
    !(await fsp.lstat(pool).then(
      (st) => st.isDirectory(),
      () => false,
    ))
  )
    return [];
  const named = new Set<string>();
  const gens = (await listGenerations(backupDir, base)).filter((g) => g.kind === 'pool');
  const stamps = new Set(gens.map((g) => g.stamp));
  for (const g of gens) {
    let m;
    try {
      m = await readManifest(g);
    } catch (e) {
      if (PloneBackupError.is(e, 'MANIFEST_BAD')) return []; // cannot tell what it needs: keep everything
      throw e;
    }
    // A parent gone (deleted by hand?): what it named may be wanted back; keep everything.
    if (!m || (m.parent !== undefined && !stamps.has(m.parent))) return [];
    for (const [rel] of m.files) named.add(rel);
  }
  const { layout } = await readLayout(pool);
  const { files, strays } = await listBlobFiles(pool, layout);
  const doomed = [...files.map((f) => f.rel).filter((r) => !named.has(r)), ...strays.filter((r) => isTempName(path.posix.basename(r)))];
  const removed: string[] = [];
  await eachAtMost(
    doomed,
    16,
    async (rel) => {
      await fileLayer.rm(path.join(pool, rel), { force: true });
      removed.push(path.join(pool, rel));
    },
    signal,
  );
  // Folders left empty, deepest first (rmdir refuses one that is not).
  const dirs = new Set<string>();
  for (const rel of doomed) for (let d = path.posix.dirname(rel); d !== '.'; d = path.posix.dirname(d)) dirs.add(d);
  for (const d of [...dirs].sort((a, b) => b.length - a.length)) await fileLayer.rmdir(path.join(pool, d)).catch(() => undefined);
  return removed;
}

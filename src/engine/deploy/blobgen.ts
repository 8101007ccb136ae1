/**
 * Blob generations: collective.recipe.backup's blob backup layout.
 *
 *   blobstoragebackups/
 *     blobstorage.2026-01-03-10-00-00/blobstorage/<the blob tree>   one per backup
 *     blobstorage.0/blobstorage/...                                   older, numbered (0 newest)
 *     blobstorage.2026-01-03-10-00-00.tar[.gz]                        archived
 *     blobstorage.2026-01-03-10-00-00.snar                            incremental_blobs: the
 *     blobstorage.2026-01-03-11-00-00.delta.tar[.gz]                  chain's GNU tar snapshot
 *                                                                     file, then deltas
 *     latest -> blobstorage.2026-01-03-10-00-00
 *     blobstorage.2026-01-03-10-00-00.json + blobstorage.pool/         our own deployments' default:
 *                                                                     a manifest per generation over
 *                                                                     a shared pool (blobpool.ts)
 *
 * A dir generation we make holds exactly the blob files that the filestorage
 * state with the same stamp references (never tmp/, never a file no
 * committed record names), plus `.layout`. Files the previous generation has
 * are hard links to it (blob files never change); new ones are copied (a
 * reflink where the filesystem can). It is built under a temp name and
 * renamed into place whole; `latest` is replaced atomically. Beside the tree,
 * `.plone-backup.json` records what the generation holds, so the next
 * backup, check and list need not rescan Data.fs.
 */

import { constants as fsc, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { PloneBackupError } from '../base/errors';
import { type BlobLayout, LAYOUT_FILE, eachAtMost, isBlobRelPath, notABlobFile } from '../zodb/blobdir';
import {
  PRIVATE_MODES,
  READ_CAPS,
  copyRegularFile,
  exists,
  fileLayer,
  fsyncDir,
  isTempName,
  linkRegularFile,
  readFileCapped,
  tempPath,
  writeNewFile,
  type Modes,
} from '../base/io';
import { isStamp } from '../zodb/tid';

export const MANIFEST = '.plone-backup.json';
export const LATEST = 'latest';

/** A hard-link tree, a (GNU) tar archive, or a manifest naming files of the blob pool (blobpool.ts). */
export type GenerationKind = 'dir' | 'tar' | 'tar.gz' | 'pool';

export interface Generation {
  /** Entry name in the backup folder: blobstorage.<STAMP>[.tar[.gz]|.json] or blobstorage.<N>. */
  name: string;
  path: string;
  kind: GenerationKind;
  stamp?: string;
  number?: number;
  /**
   * Where the generation's blob files are, under their relative blob paths:
   * for a dir generation its tree (<path>/<base name>), for a pool generation
   * the shared pool (<backup folder>/<base name>.pool).
   */
  content?: string;
  /** A `.delta.tar[.gz]` of incremental_blobs: it restores only on top of its chain. */
  delta?: boolean;
  /**
   * For an archive of an incremental_blobs chain (a full archive with its
   * `.snar`, or a delta): the archives to apply in order for this state, the
   * chain's full archive first and this one last. Empty for a delta whose full
   * archive is gone (it restores nothing).
   */
  archives?: string[];
}

export interface Manifest {
  /** 1: a dir generation's `.plone-backup.json`; 2: a pool generation (blobpool.ts). */
  version: 1 | 2;
  stamp: string;
  /** Committed end of the filestorage state this generation belongs to. */
  end: number;
  lastTid?: string;
  layout: BlobLayout;
  /** Pool generations: the stamp of the generation whose files this one adds to (none: it lists all). */
  parent?: string;
  /** Pool generations: how many files, and bytes, the generation holds with its parents'. */
  count?: number;
  bytes?: number;
  /** Relative blob paths and sizes (of a pool generation: those it adds to its parent's). */
  files: [string, number][];
}

/** Every generation in a blob backup folder, oldest first. */
export async function listGenerations(backupDir: string, baseName: string): Promise<Generation[]> {
  let names: string[];
  try {
    names = await fsp.readdir(backupDir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const gens: Generation[] = [];
  const prefix = `${baseName}.`;
  for (const n of names) {
    if (!n.startsWith(prefix) || isTempName(n)) continue;
    let rest = n.slice(prefix.length);
    let kind: GenerationKind = 'dir';
    if (rest.endsWith('.json')) {
      kind = 'pool';
      rest = rest.slice(0, -5);
    } else if (rest.endsWith('.tar.gz')) {
      kind = 'tar.gz';
      rest = rest.slice(0, -7);
    } else if (rest.endsWith('.tar')) {
      kind = 'tar';
      rest = rest.slice(0, -4);
    }
    const delta = kind !== 'dir' && rest.endsWith('.delta');
    if (delta) rest = rest.slice(0, -6);
    const p = path.join(backupDir, n);
    const g: Generation = { name: n, path: p, kind };
    if (delta) g.delta = true;
    if (isStamp(rest)) g.stamp = rest;
    else if (/^\d+$/.test(rest) && kind !== 'pool') g.number = Number(rest);
    else continue;
    if (kind === 'dir') {
      const st = await fsp.lstat(p).catch(() => undefined);
      if (!st?.isDirectory()) continue;
      g.content = path.join(p, baseName);
    } else if (kind === 'pool') g.content = path.join(backupDir, `${baseName}.pool`);
    gens.push(g);
  }
  // Stamped ones by stamp; numbered ones (0 is newest) before them, oldest first.
  gens.sort((a, b) => {
    if (a.stamp && b.stamp) return a.stamp < b.stamp ? -1 : a.stamp > b.stamp ? 1 : 0;
    if (a.stamp) return 1;
    if (b.stamp) return -1;
    return b.number! - a.number!;
  });
  // incremental_blobs chains: a delta applies on top of the newest older full
  // archive that has its .snar (as the recipe's tar --listed-incremental made
  // them), and the deltas between.
  const snars = new Set(names.filter((x) => x.startsWith(prefix) && x.endsWith('.snar')).map((x) => x.slice(prefix.length, -5)));
  let chain: string[] | undefined;
  for (const g of gens) {
    if (g.kind === 'dir' || !g.stamp) continue;
    if (!g.delta) {
      chain = snars.has(g.stamp) ? [g.path] : undefined;
      if (chain) g.archives = [...chain];
    } else if (chain) {
      chain.push(g.path);
      g.archives = [...chain];
    } else g.archives = [];
  }
  return gens;
}

/**
 * The name of a blob archive, as listGenerations reads it back:
 * `<base>.<stamp>[.delta].tar[.gz]` (a delta of an incremental_blobs chain).
 */
export function archivePath(backupDir: string, baseName: string, stamp: string, o: { delta?: boolean; gzip?: boolean } = {}): string {
  return path.join(backupDir, `${baseName}.${stamp}${o.delta ? '.delta' : ''}.tar${o.gzip ? '.gz' : ''}`);
}

/** The `.snar` of an incremental_blobs chain whose full archive has `stamp`. */
export function snarPath(backupDir: string, baseName: string, stamp: string): string {
  return path.join(backupDir, `${baseName}.${stamp}.snar`);
}

/**
 * A manifest found where it cannot be trusted: not JSON, not our shape, or an
 * entry that is no blob path of its layout (`../../x`, `/etc/x`). The whole
 * generation is then refused: a backup folder may have been written by
 * someone else, and a manifest entry becomes a path we read and write.
 */
export function manifestBad(file: string, why: string): PloneBackupError {
  return new PloneBackupError('MANIFEST_BAD', `The blob generation manifest ${file} cannot be trusted: ${why}; the generation is not used.`, {
    path: file,
    hint: 'Remove that generation (it was not written by plone-backup as it is), and make a new backup.',
  });
}

/**
 * Checks the fields of a manifest's head (everything but `files`); throws
 * MANIFEST_BAD. A pool generation's head also names its parent (an older
 * stamp, so that following parents always ends) and its totals.
 */
export function checkHead(m: unknown, file: string, gen: Generation): asserts m is Omit<Manifest, 'files'> {
  if (typeof m !== 'object' || m === null || Array.isArray(m)) throw manifestBad(file, 'it is not a JSON object');
  const o = m as Record<string, unknown>;
  const version = gen.kind === 'pool' ? 2 : 1;
  if (o.version !== version) throw manifestBad(file, `its version is ${JSON.stringify(o.version)}, not ${version}`);
  if (gen.kind === 'pool') {
    if (o.parent !== undefined && (typeof o.parent !== 'string' || !isStamp(o.parent) || typeof o.stamp !== 'string' || o.parent >= o.stamp))
      throw manifestBad(file, 'its parent is not an older stamp');
    for (const k of ['count', 'bytes'] as const) if (typeof o[k] !== 'number' || !Number.isSafeInteger(o[k]) || o[k] < 0) throw manifestBad(file, `its ${k} is not a count`);
  }
  if (typeof o.stamp !== 'string' || !isStamp(o.stamp) || (gen.stamp !== undefined && o.stamp !== gen.stamp)) throw manifestBad(file, "its stamp is not the generation's");
  if (typeof o.end !== 'number' || !Number.isSafeInteger(o.end) || o.end < 0) throw manifestBad(file, 'its end is not a position');
  if (o.lastTid !== undefined && (typeof o.lastTid !== 'string' || !/^[0-9a-f]{16}$/.test(o.lastTid))) throw manifestBad(file, 'its lastTid is not a tid');
  if (o.layout !== 'bushy' && o.layout !== 'lawn') throw manifestBad(file, 'its layout is neither bushy nor lawn');
}

/** Where a generation's manifest is: in a dir generation's folder, or the pool generation itself. */
export function manifestFile(gen: Generation): string {
  return gen.kind === 'pool' ? gen.path : path.join(gen.path, MANIFEST);
}

/**
 * Reads and checks a dir generation's manifest: undefined when it has none
 * (the recipe's generations, or an archive), MANIFEST_BAD when it is there but
 * not what we write. Every entry must be a blob path of the manifest's layout
 * (so it stays inside whatever folder it is joined to) with a size; read
 * without following a link, bounded by READ_CAPS.manifest. For a pool
 * generation: its own manifest, whose `files` are only those it added to its
 * parent's (blobpool.ts's generationFiles gives them all).
 */
export async function readManifest(gen: Generation): Promise<Manifest | undefined> {
  if (gen.kind !== 'dir' && gen.kind !== 'pool') return undefined;
  const file = manifestFile(gen);
  let text: string;
  try {
    text = (await readFileCapped(file, READ_CAPS.manifest, { noFollow: true, what: 'The blob generation manifest' })).toString('utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    if (PloneBackupError.is(e)) throw manifestBad(file, e.message.replace(/\.$/, ''));
    throw e;
  }
  let m: unknown;
  try {
    m = JSON.parse(text);
  } catch {
    throw manifestBad(file, 'it is not valid JSON');
  }
  checkHead(m, file, gen);
  const files = (m as { files?: unknown }).files;
  if (!Array.isArray(files)) throw manifestBad(file, 'it has no file list');
  for (let i = 0; i < files.length; i++) {
    const f: unknown = files[i];
    if (!Array.isArray(f) || f.length !== 2 || typeof f[0] !== 'string' || typeof f[1] !== 'number' || !Number.isSafeInteger(f[1]) || f[1] < 0) {
      throw manifestBad(file, `entry ${i + 1} is not a [path, size] pair`);
    }
    if (!isBlobRelPath(f[0], m.layout)) throw manifestBad(file, `entry ${i + 1} (${JSON.stringify(f[0].slice(0, 200))}) is not a blob path of the ${m.layout} layout`);
  }
  return m as Manifest;
}

/**
 * A manifest without its file list: what a generation describes (stamp, end,
 * last tid, layout), read from the head of the file alone. The manifest is
 * written with `files` last, so its head parses without the 20,000 entries
 * after it; anything else is read whole (and checked whole).
 */
export async function readManifestHead(gen: Generation): Promise<Omit<Manifest, 'files'> | undefined> {
  if (gen.kind !== 'dir' && gen.kind !== 'pool') return undefined;
  const file = manifestFile(gen);
  let head: string;
  try {
    const fh = await fsp.open(file, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
    try {
      if (!(await fh.stat()).isFile()) throw manifestBad(file, 'it is not a regular file');
      const b = Buffer.alloc(2048);
      const { bytesRead } = await fh.read(b, 0, b.length, 0);
      head = b.toString('utf8', 0, bytesRead);
    } finally {
      await fh.close();
    }
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP') throw manifestBad(file, 'it is a symbolic link');
    throw e;
  }
  const cut = head.indexOf(',"files":');
  if (cut > 0) {
    let m: unknown;
    try {
      m = JSON.parse(head.slice(0, cut) + '}');
    } catch {
      m = undefined; // not the shape we write: read it whole
    }
    if (m !== undefined) {
      checkHead(m, file, gen);
      return m;
    }
  }
  const whole = await readManifest(gen);
  if (!whole) return undefined;
  const { files: _files, ...rest } = whole;
  return rest;
}

/** `read`'s manifest, or undefined when it cannot be trusted (MANIFEST_BAD): such a generation describes nothing. */
async function unlessBad<T>(read: Promise<T>): Promise<T | undefined> {
  try {
    return await read;
  } catch (e) {
    if (PloneBackupError.is(e, 'MANIFEST_BAD')) return undefined;
    throw e;
  }
}

/** A generation's whole manifest when it has one that can be trusted (readManifest); none otherwise. */
export function soundManifest(gen: Generation): Promise<Manifest | undefined> {
  return unlessBad(readManifest(gen));
}

/** What a generation's manifest describes, without its file list, when it can be trusted (readManifestHead); none otherwise. */
export function soundHead(gen: Generation): Promise<Omit<Manifest, 'files'> | undefined> {
  return unlessBad(readManifestHead(gen));
}

/**
 * The newest tree generation of `gens` that a new generation may hard-link
 * its unchanged files from: one without a manifest (the recipe's) or with a
 * sound one, never one whose manifest cannot be trusted.
 */
export async function linkableTree(gens: readonly Generation[]): Promise<Generation | undefined> {
  const g = [...gens].reverse().find((x) => x.kind === 'dir');
  if (!g) return undefined;
  return readManifestHead(g).then(
    () => g,
    () => undefined,
  );
}

/**
 * Creates the parent folders of many relative paths once each, parents first,
 * each level in parallel, with `mode` (as ZODB's own 0700 blob folders, or
 * no wider than the source Data.fs).
 */
export async function makeDirs(root: string, rels: string[], mode = 0o700): Promise<void> {
  const dirs = new Set<string>();
  for (const r of rels) {
    let d = path.posix.dirname(r);
    while (d !== '.' && !dirs.has(d)) {
      dirs.add(d);
      d = path.posix.dirname(d);
    }
  }
  // Parents before children: sort by depth, then create level by level in parallel.
  const byDepth = new Map<number, string[]>();
  for (const d of dirs) {
    const depth = d.split('/').length;
    const level = byDepth.get(depth);
    if (level) level.push(d);
    else byDepth.set(depth, [d]);
  }
  for (const depth of [...byDepth.keys()].sort((a, b) => a - b)) {
    await eachAtMost(byDepth.get(depth)!, 16, (d) =>
      fileLayer.mkdir(path.join(root, d), { mode }).then(
        () => undefined,
        (e) => {
          if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        },
      ),
    );
  }
}

export interface BuildResult {
  /** Temp folder holding the finished generation. */
  temp: string;
  final: string;
  linked: number;
  copied: number;
  bytes: number;
  manifest: Manifest;
  commit(): Promise<void>;
  discard(): Promise<void>;
}

/** A blob file that a committed record names is gone: a pack removed it, or the deployment is damaged. */
export class BlobVanished extends PloneBackupError {
  constructor(file: string) {
    super('SOURCE_CHANGED', `The blob file ${file} disappeared while it was being backed up (a pack?).`, {
      path: file,
      hint: 'Run the backup again; if it persists, run `plone-backup check`.',
    });
  }
}

/** What every blob generation is built from, whatever its storage (a tree here, the pool in blobpool.ts). */
export interface GenerationInputs {
  blobDir: string;
  layout: BlobLayout;
  backupDir: string;
  stamp: string;
  /** The end of the filestorage state the generation matches, and its last transaction. */
  end: number;
  lastTid?: string;
  /**
   * Where nothing holds a file yet, hard-link it from the live blobstorage
   * instead of copying (the recipe's rsync_hard_links_on_first_copy): ZODB
   * never changes a committed blob file, but the backup then shares the live
   * disk and inodes.
   */
  linkFromLive?: boolean;
  /** Modes of what is created (from the source Data.fs): blob files keep their own. */
  modes?: Modes;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
}

/**
 * Builds a generation for `stamp` holding the `needed` blob files of `blobDir`.
 * Nothing is visible under the final name until `commit()`.
 */
export async function buildGeneration(
  opts: GenerationInputs & {
    needed: string[];
    previous?: Generation;
    /** Copy instead of hard-linking to the previous generation. */
    noLinks?: boolean;
  },
): Promise<BuildResult> {
  const modes = opts.modes ?? PRIVATE_MODES;
  const base = path.basename(opts.blobDir);
  const final = path.join(opts.backupDir, `${base}.${opts.stamp}`);
  if (await exists(final)) {
    throw new PloneBackupError('WOULD_OVERWRITE', `The blob generation ${final} already exists.`, { path: final, hint: 'Remove it or wait a second.' });
  }
  await fileLayer.mkdir(opts.backupDir, { recursive: true, mode: modes.dir });
  const temp = tempPath(final, 'gen');
  const content = path.join(temp, base);
  await fileLayer.mkdir(content, { recursive: true, mode: modes.dir });
  let linked = 0;
  let copied = 0;
  let bytes = 0;
  const files: [string, number][] = [];
  let manifest: Manifest | undefined;
  const prev = opts.previous?.kind === 'dir' ? opts.previous.content : opts.linkFromLive ? opts.blobDir : undefined;
  try {
    await writeNewFile(path.join(content, LAYOUT_FILE), opts.layout + '\n', modes.file);
    const needed = [...new Set(opts.needed)].sort();
    await makeDirs(content, needed, modes.dir);
    let done = 0;
    await eachAtMost(
      needed,
      16,
      async (rel) => {
        const { size, how } = await placeBlobFile(rel, opts.noLinks ? undefined : prev, opts.blobDir, content, modes.file);
        files.push([rel, size]);
        if (how === 'linked') linked++;
        else copied++;
        bytes += size;
        opts.onProgress?.(++done, needed.length);
      },
      opts.signal,
    );
    files.sort((a, b) => (a[0] < b[0] ? -1 : 1));
    // `files` last: readManifestHead parses what comes before it alone.
    manifest = { version: 1, stamp: opts.stamp, end: opts.end, lastTid: opts.lastTid, layout: opts.layout, files };
    await writeNewFile(path.join(temp, MANIFEST), JSON.stringify(manifest), modes.file);
  } catch (e) {
    await fileLayer.rm(temp, { recursive: true, force: true });
    throw e;
  }
  let settled = false;
  return {
    temp,
    final,
    linked,
    copied,
    bytes,
    manifest: manifest!,
    async commit() {
      if (settled) return;
      settled = true;
      await fileLayer.rename(temp, final);
      await setLatest(opts.backupDir, path.basename(final));
      await fsyncDir(opts.backupDir);
    },
    async discard() {
      if (settled) return;
      settled = true;
      await fileLayer.rm(temp, { recursive: true, force: true });
    },
  };
}

/**
 * Puts the blob file `rel` into the tree `content`: a hard link to it in
 * `prev` (the previous generation, or the live folder) when that is a plain
 * file there, else a copy of the live one, never through a link (a blob
 * swapped for a link to a private file must not put that file into a backup).
 */
async function placeBlobFile(rel: string, prev: string | undefined, blobDir: string, content: string, fileMode: number): Promise<{ size: number; how: 'linked' | 'copied' }> {
  const dst = path.join(content, rel);
  if (prev) {
    try {
      // Anything but a plain file from the previous generation: the live file is copied instead.
      const r = await linkRegularFile(path.join(prev, rel), dst);
      if ('st' in r) return { size: r.st.size, how: 'linked' };
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'EXDEV' && code !== 'EPERM' && code !== 'EMLINK') throw e;
    }
  }
  const src = path.join(blobDir, rel);
  try {
    await copyRegularFile(src, dst, fsc.COPYFILE_FICLONE | fsc.COPYFILE_EXCL, notABlobFile, fileMode);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new BlobVanished(src);
    throw e;
  }
  return { size: (await fsp.lstat(dst)).size, how: 'copied' };
}

/** Points `latest` at `name`, replacing the link atomically (symlink to a temp name, rename). */
export async function setLatest(backupDir: string, name: string): Promise<void> {
  const link = path.join(backupDir, LATEST);
  const cur = await fsp.lstat(link).catch(() => undefined);
  if (cur && !cur.isSymbolicLink()) return; // someone's own folder named latest: leave it alone
  const tmp = tempPath(link, 'lnk');
  await fileLayer.symlink(name, tmp);
  await fileLayer.rename(tmp, link);
}

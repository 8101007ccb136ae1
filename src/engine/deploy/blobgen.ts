/**
 * Blob generations: collective.recipe.backup's blob backup layout.
 *
 *   blobstoragebackups/
 *     blobstorage.2026-01-03-10-00-00/blobstorage/<the blob tree>   one per backup
 *     blobstorage.0/blobstorage/...                                   older, numbered (0 newest)
 *     blobstorage.2026-01-03-10-00-00.tar[.gz]                        archived
 *     latest -> blobstorage.2026-01-03-10-00-00
 *
 * A generation we make holds exactly the blob files that the filestorage
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
import { PloneBackupError, checkAbort } from '../errors';
import { type BlobLayout, LAYOUT_FILE, blobRelPath, listBlobFiles } from '../blobdir';
import { exists, fsyncDir, isTempName, tempPath } from '../io';
import { isStamp } from '../tid';

export const MANIFEST = '.plone-backup.json';
export const LATEST = 'latest';

export type GenerationKind = 'dir' | 'tar' | 'tar.gz';

export interface Generation {
  /** Entry name in the backup folder: blobstorage.<STAMP>[.tar[.gz]] or blobstorage.<N>. */
  name: string;
  path: string;
  kind: GenerationKind;
  stamp?: string;
  number?: number;
  /** For a dir generation: the folder holding the blob tree (<path>/<base name>). */
  content?: string;
}

export interface Manifest {
  version: 1;
  stamp: string;
  /** Committed end of the filestorage state this generation belongs to. */
  end: number;
  lastTid?: string;
  layout: BlobLayout;
  /** Relative blob paths and sizes. */
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
    if (rest.endsWith('.tar.gz')) {
      kind = 'tar.gz';
      rest = rest.slice(0, -7);
    } else if (rest.endsWith('.tar')) {
      kind = 'tar';
      rest = rest.slice(0, -4);
    }
    const p = path.join(backupDir, n);
    const g: Generation = { name: n, path: p, kind };
    if (isStamp(rest)) g.stamp = rest;
    else if (/^\d+$/.test(rest)) g.number = Number(rest);
    else continue;
    if (kind === 'dir') {
      const st = await fsp.lstat(p).catch(() => undefined);
      if (!st?.isDirectory()) continue;
      g.content = path.join(p, baseName);
    }
    gens.push(g);
  }
  // Stamped ones by stamp; numbered ones (0 is newest) before them, oldest first.
  gens.sort((a, b) => {
    if (a.stamp && b.stamp) return a.stamp < b.stamp ? -1 : a.stamp > b.stamp ? 1 : 0;
    if (a.stamp) return 1;
    if (b.stamp) return -1;
    return b.number! - a.number!;
  });
  return gens;
}

export async function readManifest(gen: Generation): Promise<Manifest | undefined> {
  if (gen.kind !== 'dir') return undefined;
  try {
    const m = JSON.parse(await fsp.readFile(path.join(gen.path, MANIFEST), 'utf8')) as Manifest;
    if (m.version !== 1 || !Array.isArray(m.files)) return undefined;
    return m;
  } catch {
    return undefined;
  }
}

/**
 * A manifest without its file list: what a generation describes (stamp, end,
 * last tid, layout), read from the head of the file alone. The manifest is
 * written with `files` last, so its head parses without the 20,000 entries
 * after it; anything else is read whole.
 */
export async function readManifestHead(gen: Generation): Promise<Omit<Manifest, 'files'> | undefined> {
  if (gen.kind !== 'dir') return undefined;
  let head: string;
  try {
    const fh = await fsp.open(path.join(gen.path, MANIFEST), 'r');
    try {
      const b = Buffer.alloc(1024);
      const { bytesRead } = await fh.read(b, 0, b.length, 0);
      head = b.toString('utf8', 0, bytesRead);
    } finally {
      await fh.close();
    }
  } catch {
    return undefined;
  }
  const cut = head.indexOf(',"files":');
  if (cut > 0) {
    try {
      const m = JSON.parse(head.slice(0, cut) + '}') as Omit<Manifest, 'files'>;
      if (m.version === 1) return m;
    } catch {
      // not the shape we write: read it whole
    }
  }
  const whole = await readManifest(gen);
  if (!whole) return undefined;
  const { files: _files, ...rest } = whole;
  return rest;
}

/** Runs `fn` over `items` with at most `n` at once (libuv has four threads; keep them busy). */
export async function eachLimit<T>(items: T[], n: number, fn: (t: T) => Promise<void>, signal?: AbortSignal): Promise<void> {
  let i = 0;
  let failed: unknown;
  const worker = async () => {
    while (i < items.length && failed === undefined) {
      const t = items[i++];
      try {
        if (signal?.aborted) checkAbort(signal);
        await fn(t);
      } catch (e) {
        failed ??= e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  if (failed !== undefined) throw failed;
}

/** Creates the parent folders of many relative paths once each, parents first, each level in parallel. */
export async function makeDirs(root: string, rels: string[]): Promise<void> {
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
    await eachLimit(byDepth.get(depth)!, 16, (d) => fsp.mkdir(path.join(root, d)).catch((e) => {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }));
  }
}

export interface NeededBlob {
  rel: string;
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

/**
 * Builds a generation for `stamp` holding the `needed` blob files of `blobDir`.
 * Nothing is visible under the final name until `commit()`.
 */
export async function buildGeneration(opts: {
  blobDir: string;
  layout: BlobLayout;
  backupDir: string;
  stamp: string;
  end: number;
  lastTid?: string;
  needed: string[];
  previous?: Generation;
  /** Copy instead of hard-linking to the previous generation. */
  noLinks?: boolean;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
}): Promise<BuildResult> {
  const base = path.basename(opts.blobDir);
  const final = path.join(opts.backupDir, `${base}.${opts.stamp}`);
  if (await exists(final)) {
    throw new PloneBackupError('WOULD_OVERWRITE', `The blob generation ${final} already exists.`, { path: final, hint: 'Remove it or wait a second.' });
  }
  await fsp.mkdir(opts.backupDir, { recursive: true });
  const temp = tempPath(final, 'gen');
  const content = path.join(temp, base);
  await fsp.mkdir(content, { recursive: true });
  let linked = 0;
  let copied = 0;
  let bytes = 0;
  const files: [string, number][] = [];
  let manifest: Manifest | undefined;
  const prev = opts.previous?.kind === 'dir' ? opts.previous.content : undefined;
  try {
    await fsp.writeFile(path.join(content, LAYOUT_FILE), opts.layout + '\n');
    const needed = [...new Set(opts.needed)].sort();
    await makeDirs(content, needed);
    let done = 0;
    await eachLimit(
      needed,
      16,
      async (rel) => {
        const dst = path.join(content, rel);
        if (prev && !opts.noLinks) {
          try {
            await fsp.link(path.join(prev, rel), dst);
            const st = await fsp.stat(dst);
            files.push([rel, st.size]);
            linked++;
            bytes += st.size;
            opts.onProgress?.(++done, needed.length);
            return;
          } catch (e) {
            const code = (e as NodeJS.ErrnoException).code;
            if (code !== 'ENOENT' && code !== 'EXDEV' && code !== 'EPERM' && code !== 'EMLINK') throw e;
          }
        }
        const src = path.join(opts.blobDir, rel);
        try {
          await fsp.copyFile(src, dst, fsc.COPYFILE_FICLONE | fsc.COPYFILE_EXCL);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new BlobVanished(src);
          throw e;
        }
        const st = await fsp.stat(dst);
        files.push([rel, st.size]);
        copied++;
        bytes += st.size;
        opts.onProgress?.(++done, needed.length);
      },
      opts.signal,
    );
    files.sort((a, b) => (a[0] < b[0] ? -1 : 1));
    // `files` last: readManifestHead parses what comes before it alone.
    manifest = { version: 1, stamp: opts.stamp, end: opts.end, lastTid: opts.lastTid, layout: opts.layout, files };
    await fsp.writeFile(path.join(temp, MANIFEST), JSON.stringify(manifest));
  } catch (e) {
    await fsp.rm(temp, { recursive: true, force: true });
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
      await fsp.rename(temp, final);
      await setLatest(opts.backupDir, path.basename(final));
      await fsyncDir(opts.backupDir);
    },
    async discard() {
      if (settled) return;
      settled = true;
      await fsp.rm(temp, { recursive: true, force: true });
    },
  };
}

/** Points `latest` at `name`, replacing the link atomically (symlink to a temp name, rename). */
export async function setLatest(backupDir: string, name: string): Promise<void> {
  const link = path.join(backupDir, LATEST);
  const cur = await fsp.lstat(link).catch(() => undefined);
  if (cur && !cur.isSymbolicLink()) return; // someone's own folder named latest: leave it alone
  const tmp = tempPath(link, 'lnk');
  await fsp.symlink(name, tmp);
  await fsp.rename(tmp, link);
}

/** The relative blob paths of a list of (oid, tid) refs. */
export function relPathsOf(refs: { oid: Buffer; tid: Buffer }[], layout: BlobLayout): string[] {
  return refs.map((r) => blobRelPath(r.oid, r.tid, layout));
}

/** The files a dir generation holds (from its manifest when it has one, else by listing). */
export async function generationFiles(gen: Generation, layout: BlobLayout): Promise<Map<string, number>> {
  const m = await readManifest(gen);
  if (m) return new Map(m.files);
  if (gen.kind !== 'dir' || !gen.content) return new Map();
  const { files } = await listBlobFiles(gen.content, layout);
  return new Map(files.map((f) => [f.rel, f.size]));
}

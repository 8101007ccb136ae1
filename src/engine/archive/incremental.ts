/**
 * GNU tar's listed-incremental archives of blob trees, as collective.recipe.backup
 * makes them with `archive_blob` and `incremental_blobs`:
 *
 *   full:  tar cf blobstorage.<FULL>.tar        --listed-incremental=blobstorage.<FULL>.snar -C blobstorage .
 *   delta: tar cf blobstorage.<STAMP>.delta.tar --listed-incremental=blobstorage.<FULL>.snar -C blobstorage .
 *
 * (`tar czf` and `.tar.gz` with compress_blob), restored by `tar xf <full>
 * --incremental -C blobstorage`, then each delta up to the date in order, into
 * a fresh folder.
 *
 * The format (GNU tar manual, "Dumpdir" and "Snapshot Files"):
 *
 * - Every folder is a member of type 'D' (a "dumpdir"), written before the
 *   files; its data lists the folder's entries, each a control letter, a name
 *   and a NUL, the list ending with one more NUL: 'Y' a file this archive
 *   holds, 'N' a file that was there before and is unchanged (not in this
 *   archive), 'D' a sub-folder. GNU tar's extraction with --incremental first
 *   deletes whatever the folder holds on disk that its listing does not name
 *   (or names as a file where a folder is, or the other way round): that is
 *   how a delta replays deletions. 'R' <old> 'T' <new> pairs (paths from
 *   the root, with an 'X' <folder> for a temp name when renames cross) record
 *   a folder GNU tar found under a new name by its device and inode: real
 *   in blob trees, where a pack removes a folder and a new one gets its
 *   inode. They are replayed as tar does, before the purge.
 * - The snapshot file (.snar, format 2): "GNU tar-<version>-2\n", the time
 *   the dump started (seconds NUL nanoseconds NUL), then per folder:
 *   nfs NUL mtime-s NUL mtime-ns NUL dev NUL ino NUL name NUL, its listing
 *   (letter+name NUL each), and NUL NUL. The next `tar --listed-incremental`
 *   dumps a file when it is not in its folder's listing, or when its mtime or
 *   ctime is not older than that time; a folder whose dev/ino differ, or that
 *   has no record, is dumped whole.
 *
 * What this module does:
 *
 * - reads such archives (plain or gzip) and replays a chain of them in
 *   memory exactly as `tar xf --incremental` would on an empty folder: which
 *   files end up where, and which archive holds each one's bytes;
 * - extracts that file set (and only it: a file a later delta deletes is
 *   never written) through the same checks as tar.ts's extractTar, after
 *   every archive was read and found sound, so a hostile archive writes
 *   nothing;
 * - writes a full or a delta archive and its .snar that GNU tar reads and
 *   continues, so an administrator going back to the recipe's `bin/backup`
 *   and `bin/restore` carries on with the same chain. The caller names the
 *   file set (exactly the blob files a filestorage state references, never
 *   tmp/ or uncommitted files); a delta holds the files not in the previous
 *   state (blob files never change once committed) and a listing of every
 *   folder, so deletions are replayed.
 */

import { constants as fsc, promises as fsp, type BigIntStats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { PloneBackupError, checkAbort } from '../base/errors';
import { HashingFileWriter, PRIVATE_MODES, READ_CAPS, fileLayer, fsyncDir, readFileCapped, tempPath, writeAll, writeNewFile, type Modes } from '../base/io';
import { readRange } from '../base/streams';
import { notABlobFile } from '../zodb/blobdir';
import { DUMPDIR, MAX_DUMPDIR, encodeGnuHeader, pad, readTar, safeMemberPath } from './tar';

const BLOCK = 512;
/** GNU tar pads an archive to whole records of 20 blocks; so do we, to be byte-alike. */
const RECORD = 20 * BLOCK;
/** The snapshot file's first line: GNU tar accepts any version here with format 2. */
const SNAR_HEADER = 'GNU tar-1.34-2\n';

// ---------------------------------------------------------------------------
// Dumpdirs

export type DumpdirCode = 'Y' | 'N' | 'D' | 'R' | 'T' | 'X';

export interface DumpdirEntry {
  code: DumpdirCode;
  /**
   * 'Y', 'N', 'D': one name inside the folder, never empty, '.', '..' or
   * holding '/'. 'R' (rename from), 'T' (to), 'X' (where the temp folder
   * goes): a folder path from the root, checked and without `./` ('' for the
   * root, or for the temp folder in 'R'/'T').
   */
  name: string;
}

/** A path in an 'R'/'T'/'X' entry, relative to the extraction root ('' for it). */
function renamePath(name: string, file: string): string {
  if (name === '' || name === '.' || name === './') return '';
  return safeMemberPath(name, file);
}

function bad(file: string, what: string, hint = 'The archive is damaged or was not made by a backup tool; nothing was extracted from it.'): PloneBackupError {
  return new PloneBackupError('ARCHIVE_BAD', `${file} ${what}`, { path: file, hint });
}

/**
 * Parses a folder listing (an archive's dumpdir data, or the part of a .snar
 * record after its name): entries `<letter><name>\0`, ended by an empty one.
 * Returns the entries and where the listing ended (after its final NUL).
 */
function parseListing(b: Buffer, start: number, file: string, dir: string): { entries: DumpdirEntry[]; end: number } {
  const entries: DumpdirEntry[] = [];
  const seen = new Set<string>();
  const where = `the folder listing for "${dir.slice(0, 200)}"`;
  // GNU tar's own checks of rename entries (dumpdir_ok): 'T' follows each 'R', one 'X' at most.
  let expectT = false;
  let temp = false;
  let pos = start;
  for (;;) {
    if (pos >= b.length) throw bad(file, `has a truncated folder listing for "${dir.slice(0, 200)}".`);
    if (b[pos] === 0) {
      if (expectT) throw bad(file, `has a rename without its target in ${where}.`);
      return { entries, end: pos + 1 };
    }
    const nul = b.indexOf(0, pos);
    if (nul < 0) throw bad(file, `has a truncated folder listing for "${dir.slice(0, 200)}".`);
    const code = String.fromCharCode(b[pos]!);
    const name = b.toString('utf8', pos + 1, nul);
    pos = nul + 1;
    if (expectT !== (code === 'T')) throw bad(file, `has a malformed rename in ${where}.`);
    if (code === 'R' || code === 'T' || code === 'X') {
      if (code === 'X') {
        if (temp) throw bad(file, `has two temp folders in ${where}.`);
        temp = true;
      } else if (name === '' && !temp) throw bad(file, `has a rename with an empty name in ${where}.`);
      expectT = code === 'R';
      entries.push({ code, name: renamePath(name, file) });
      continue;
    }
    if (code !== 'Y' && code !== 'N' && code !== 'D') throw bad(file, `has an unknown entry "${code}" in ${where}.`);
    if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\\')) {
      throw bad(
        file,
        `has an unsafe name "${name.slice(0, 200)}" in the folder listing for "${dir.slice(0, 200)}"; nothing was extracted.`,
        'The archive was not made by a backup tool; do not use it.',
      );
    }
    if (seen.has(name)) throw bad(file, `names "${name.slice(0, 200)}" twice in the folder listing for "${dir.slice(0, 200)}".`);
    seen.add(name);
    entries.push({ code, name });
  }
}

/** An archive's dumpdir data: exactly one listing (size 0: no listing, as GNU tar takes it). */
export function parseDumpdir(data: Buffer, file = 'archive', dir = ''): DumpdirEntry[] | undefined {
  if (data.length === 0) return undefined;
  const { entries, end } = parseListing(data, 0, file, dir);
  if (end !== data.length) throw bad(file, `has data after the folder listing for "${dir.slice(0, 200)}".`);
  return entries;
}

function encodeListing(entries: readonly DumpdirEntry[]): Buffer {
  return Buffer.concat([...entries.map((e) => Buffer.from(`${e.code}${e.name}\0`, 'utf8')), Buffer.alloc(1)]);
}

// ---------------------------------------------------------------------------
// Reading archives

export interface IncrementalDirMember {
  kind: 'dir';
  /** Relative to the archive's root, without `./`; '' for the root. */
  path: string;
  mode: number;
  mtime: number;
  /** Its listing: undefined for a plain folder member (a non-incremental archive). */
  dumpdir?: DumpdirEntry[];
}

export interface IncrementalFileMember {
  kind: 'file';
  path: string;
  size: number;
  mode: number;
  mtime: number;
  /** Its ordinal among the archive's file members: how extraction finds it again. */
  index: number;
}

export type IncrementalMember = IncrementalDirMember | IncrementalFileMember;

export interface IncrementalArchive {
  file: string;
  gzip: boolean;
  /** Whether it has dumpdir members (a listed-incremental archive). */
  incremental: boolean;
  /** In archive order. */
  members: IncrementalMember[];
}

/** Whether `file` starts with gzip's magic (a `.tar.gz`, whatever its name). */
async function isGzip(file: string): Promise<boolean> {
  const fh = await fsp.open(file, fsc.O_RDONLY | fsc.O_NONBLOCK);
  try {
    if (!(await fh.stat()).isFile()) throw bad(file, 'is not a regular file.');
    const b = Buffer.alloc(2);
    const { bytesRead } = await fh.read(b, 0, 2, 0);
    return bytesRead === 2 && b[0] === 0x1f && b[1] === 0x8b;
  } finally {
    await fh.close();
  }
}

async function collect(content: AsyncGenerator<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of content) parts.push(c);
  return Buffer.concat(parts);
}

/**
 * Reads an archive's members (plain or, sniffed unless `gzip` says, gzip):
 * its folders with their listings and its files, all paths checked
 * (safeMemberPath), contents skipped. Links, devices and anything else but
 * files and folders are ARCHIVE_BAD, as in readTar.
 */
export async function readIncrementalArchive(file: string, opts: { gzip?: boolean; signal?: AbortSignal } = {}): Promise<IncrementalArchive> {
  const gzip = opts.gzip ?? (await isGzip(file));
  const members: IncrementalMember[] = [];
  let incremental = false;
  let index = 0;
  await readTar(file, { gzip, signal: opts.signal, dumpdirs: true }, async (h, rel, content) => {
    if (h.type === DUMPDIR) {
      incremental = true;
      const dumpdir = parseDumpdir(await collect(content!), file, rel || '.');
      members.push({ kind: 'dir', path: rel, mode: h.mode, mtime: h.mtime, ...(dumpdir ? { dumpdir } : {}) });
    } else if (!content) {
      members.push({ kind: 'dir', path: rel, mode: h.mode, mtime: h.mtime });
    } else {
      members.push({ kind: 'file', path: rel, size: h.size, mode: h.mode, mtime: h.mtime, index: index++ });
    }
  });
  return { file, gzip, incremental, members };
}

// ---------------------------------------------------------------------------
// Replay

export interface IncrementalFile {
  /** The archive holding the file's bytes (the last one that wrote it). */
  archive: string;
  /** Its ordinal among that archive's file members. */
  index: number;
  size: number;
  mode: number;
  mtime: number;
}

export interface IncrementalTree {
  files: Map<string, IncrementalFile>;
  /** Every folder, '' (the root) included. */
  dirs: Set<string>;
}

const parentOf = (p: string): string => {
  const i = p.lastIndexOf('/');
  return i < 0 ? '' : p.slice(0, i);
};
const baseOf = (p: string): string => p.slice(p.lastIndexOf('/') + 1);
const joinRel = (dir: string, name: string): string => (dir === '' ? name : `${dir}/${name}`);

/** The tree `tar xf --incremental` leaves on disk, kept in memory: files, folders and each folder's children. */
class ReplayState {
  readonly files = new Map<string, IncrementalFile>();
  readonly dirs = new Set<string>(['']);
  private readonly children = new Map<string, Set<string>>([['', new Set()]]);

  private link(p: string): void {
    this.children.get(parentOf(p))!.add(baseOf(p));
  }

  private remove(p: string): void {
    if (this.files.delete(p)) {
      this.children.get(parentOf(p))?.delete(baseOf(p));
      return;
    }
    if (!this.dirs.has(p) || p === '') return;
    for (const c of [...(this.children.get(p) ?? [])]) this.remove(joinRel(p, c));
    this.dirs.delete(p);
    this.children.delete(p);
    this.children.get(parentOf(p))?.delete(baseOf(p));
  }

  /** A folder's missing ancestors are made, as tar does; a file in the way is an archive no backup makes. */
  private makeParents(p: string, file: string): void {
    const parent = parentOf(p);
    if (this.dirs.has(parent)) return;
    if (this.files.has(parent)) throw bad(file, `holds "${p.slice(0, 200)}" below "${parent.slice(0, 200)}", which is a file.`);
    this.makeParents(parent, file);
    this.dirs.add(parent);
    this.children.set(parent, new Set());
    this.link(parent);
  }

  /** Every folder and file below `p` (`p` first). */
  private subtree(p: string, dirs: string[], files: string[]): void {
    dirs.push(p);
    for (const c of this.children.get(p) ?? []) {
      const child = joinRel(p, c);
      if (this.dirs.has(child)) this.subtree(child, dirs, files);
      else files.push(child);
    }
  }

  /** rename(2) of a folder, as tar's rename_directory: what tar itself fails on is ARCHIVE_BAD. */
  private move(src: string, dst: string, file: string): void {
    const fail = (why: string) => bad(file, `renames the folder "${src.slice(0, 200)}" to "${dst.slice(0, 200)}", ${why}.`);
    if (src === dst) return;
    if (src === '' || !this.dirs.has(src)) throw fail('which is not there');
    if (dst === '' || dst.startsWith(`${src}/`)) throw fail('into itself');
    if (this.files.has(dst)) throw fail('where a file is');
    if (this.dirs.has(dst)) {
      if (this.children.get(dst)!.size > 0) throw fail('where a folder with content is');
      this.remove(dst);
    }
    const dirs: string[] = [];
    const files: string[] = [];
    this.subtree(src, dirs, files);
    const kids = dirs.map((d) => this.children.get(d)!);
    const refs = files.map((f) => this.files.get(f)!);
    this.children.get(parentOf(src))!.delete(baseOf(src));
    for (const d of dirs) {
      this.dirs.delete(d);
      this.children.delete(d);
    }
    for (const f of files) this.files.delete(f);
    const re = (x: string) => dst + x.slice(src.length);
    this.makeParents(dst, file);
    dirs.forEach((d, i) => {
      this.dirs.add(re(d));
      this.children.set(re(d), kids[i]!);
    });
    files.forEach((f, i) => this.files.set(re(f), refs[i]!));
    this.link(dst);
  }

  dir(p: string, dumpdir: readonly DumpdirEntry[] | undefined, file: string): void {
    if (p !== '') {
      // tar replaces a file standing where a folder is extracted.
      if (this.files.has(p)) this.remove(p);
      if (!this.dirs.has(p)) {
        this.makeParents(p, file);
        this.dirs.add(p);
        this.children.set(p, new Set());
        this.link(p);
        return; // a new folder: nothing in it to purge
      }
    }
    if (!dumpdir) return;
    // tar lists the folder before it replays the renames, and purges only what that listing had.
    const before = [...this.children.get(p)!];
    // Renames first, in order; the temp folder ('X') is a name no archive member can have.
    let temp: string | undefined;
    for (let i = 0; i < dumpdir.length; i++) {
      const e = dumpdir[i]!;
      if (e.code === 'X') temp = joinRel(e.name, '\0tar');
      if (e.code !== 'R') continue;
      const to = dumpdir[++i]!;
      this.move(e.name === '' ? temp! : e.name, to.name === '' ? temp! : to.name, file);
    }
    if (temp !== undefined && this.dirs.has(temp)) throw bad(file, 'leaves a rename half done.');
    // GNU tar's purge: what the listing does not name goes, and so does what
    // it names as a folder but is a file, or as a file ('Y') but is a folder.
    const listed = new Map(dumpdir.filter((e) => e.code === 'Y' || e.code === 'N' || e.code === 'D').map((e) => [e.name, e.code]));
    for (const name of before) {
      const child = joinRel(p, name);
      if (!this.dirs.has(child) && !this.files.has(child)) continue; // renamed away
      const code = listed.get(name);
      const isDir = this.dirs.has(child);
      if (code === undefined || (code === 'D' && !isDir) || (code === 'Y' && isDir)) this.remove(child);
    }
  }

  file(p: string, f: IncrementalFile, file: string): void {
    if (this.dirs.has(p)) {
      // tar removes an empty folder in the way (rmdir), and fails on a full one.
      if (this.children.get(p)!.size > 0) throw bad(file, `holds the file "${p.slice(0, 200)}" where a folder with content is.`);
      this.remove(p);
    }
    this.makeParents(p, file);
    this.files.set(p, f);
    this.link(p);
  }
}

function replayArchives(archives: readonly IncrementalArchive[]): IncrementalTree {
  const st = new ReplayState();
  for (const a of archives) {
    for (const m of a.members) {
      if (m.kind === 'dir') st.dir(m.path, m.dumpdir, a.file);
      else st.file(m.path, { archive: a.file, index: m.index, size: m.size, mode: m.mode, mtime: m.mtime }, a.file);
    }
  }
  return { files: st.files, dirs: st.dirs };
}

/**
 * The tree `tar xf A --incremental -C empty` of each archive in turn (the
 * full first, then its deltas in order) leaves: its files, with the archive
 * holding each one's bytes, and its folders. A plain archive gives its
 * members. Every archive is read whole first (ARCHIVE_BAD on anything unsound).
 */
export async function replayIncrementalTree(archives: readonly string[], opts: { signal?: AbortSignal } = {}): Promise<IncrementalTree> {
  const read: IncrementalArchive[] = [];
  for (const a of archives) read.push(await readIncrementalArchive(a, opts));
  return replayArchives(read);
}

/** The files of replayIncrementalTree: relative path (no `./`) → where its bytes are. */
export async function replayIncremental(archives: readonly string[], opts: { signal?: AbortSignal } = {}): Promise<Map<string, IncrementalFile>> {
  return (await replayIncrementalTree(archives, opts)).files;
}

// ---------------------------------------------------------------------------
// Extraction

export interface ExtractProgress {
  files: number;
  totalFiles: number;
  bytes: number;
  totalBytes: number;
}

/**
 * Writes the replayed tree of `archives` into `dest`: a fresh folder (made if
 * missing, refused with WOULD_OVERWRITE when not empty) that the caller swaps
 * in; nothing outside it is touched. Every archive is read and replayed
 * before anything is written; then each archive that still holds a wanted
 * file is read once more and only those files are written (a file a later
 * delta deletes never is): O(total archive bytes). Only folders and regular
 * files are made, with modes within `modes` (a member's read/write bits), each
 * file fsynced, then every folder.
 */
export async function extractIncremental(
  archives: readonly string[],
  dest: string,
  opts: { signal?: AbortSignal; modes?: Modes; onProgress?: (p: ExtractProgress) => void } = {},
): Promise<{ files: number; bytes: number }> {
  const modes = opts.modes ?? PRIVATE_MODES;
  const read: IncrementalArchive[] = [];
  for (const a of archives) read.push(await readIncrementalArchive(a, { signal: opts.signal }));
  const tree = replayArchives(read);

  const root = path.resolve(dest);
  await fileLayer.mkdir(root, { recursive: true, mode: modes.dir });
  if ((await fsp.readdir(root)).length > 0) {
    throw new PloneBackupError('WOULD_OVERWRITE', `${root} is not empty; blobs are only extracted into a fresh folder.`, { path: root });
  }
  const target = (rel: string): string => {
    const t = path.join(root, ...rel.split('/'));
    if (!t.startsWith(root + path.sep)) throw bad(rel, 'is an unsafe path.');
    return t;
  };
  // Parents before children: a path sorts after its folder's.
  const dirs = [...tree.dirs].filter((d) => d !== '').sort();
  for (const d of dirs) {
    checkAbort(opts.signal);
    await fileLayer.mkdir(target(d), { mode: modes.dir });
  }

  const wanted = new Map<string, Map<number, string>>();
  let totalBytes = 0;
  for (const [rel, f] of tree.files) {
    let m = wanted.get(f.archive);
    if (!m) wanted.set(f.archive, (m = new Map()));
    m.set(f.index, rel);
    totalBytes += f.size;
  }
  const progress: ExtractProgress = { files: 0, totalFiles: tree.files.size, bytes: 0, totalBytes };
  opts.onProgress?.({ ...progress });
  for (const a of read) {
    const want = wanted.get(a.file);
    if (!want) continue; // a delta whose every file a later one deleted: not read again
    let index = 0;
    let left = want.size;
    await readTar(a.file, { gzip: a.gzip, signal: opts.signal }, async (h, _rel, content) => {
      if (!content) return;
      const rel = want.get(index++);
      if (rel === undefined) return;
      const file = target(rel);
      const out = await fileLayer.open(file, 'wx', (h.mode & 0o666 || 0o600) & modes.file);
      try {
        let pos = 0;
        for await (const c of content) {
          await writeAll(out, c, pos, file);
          pos += c.length;
          progress.bytes += c.length;
        }
        await out.sync();
      } finally {
        await out.close();
      }
      progress.files++;
      opts.onProgress?.({ ...progress });
      left--;
    });
    if (left !== 0) throw bad(a.file, 'changed while it was read.');
  }
  for (const d of ['', ...dirs].reverse()) await fsyncDir(d === '' ? root : target(d));
  return { files: progress.files, bytes: progress.bytes };
}

// ---------------------------------------------------------------------------
// Snapshot files

export interface SnarDir {
  nfs: boolean;
  mtimeSec: bigint;
  mtimeNsec: bigint;
  dev: bigint;
  ino: bigint;
  /** As GNU tar writes it: '.' for the root, './a/b' below. */
  name: string;
  dumpdir: DumpdirEntry[];
}

export interface Snar {
  /** When the last dump started: a file older (mtime and ctime) is taken as unchanged. */
  sec: bigint;
  nsec: bigint;
  dirs: SnarDir[];
}

/** Parses a .snar (format 2) read as hostile input: a regular file, not through a link, bounded. */
export async function readSnar(file: string): Promise<Snar> {
  const b = await readFileCapped(file, READ_CAPS.manifest, { noFollow: true, what: 'The snapshot file' });
  const nl = b.indexOf(0x0a);
  const head = nl < 0 ? '' : b.toString('latin1', 0, nl);
  if (!/^GNU tar-[^\n]*-2$/.test(head)) {
    throw new PloneBackupError('ARCHIVE_BAD', `${file} is not a GNU tar snapshot file of format 2.`, {
      path: file,
      hint: 'Only snapshot files of GNU tar 1.20 or later are read.',
    });
  }
  let pos = nl + 1;
  const field = (what: string, re: RegExp): string => {
    const nul = b.indexOf(0, pos);
    if (nul < 0) throw new PloneBackupError('ARCHIVE_BAD', `${file} is truncated (in ${what}).`, { path: file });
    const s = b.toString('utf8', pos, nul);
    if (!re.test(s)) throw new PloneBackupError('ARCHIVE_BAD', `${file} has a bad ${what} "${s.slice(0, 50)}".`, { path: file });
    pos = nul + 1;
    return s;
  };
  const num = /^-?\d{1,20}$/;
  const sec = BigInt(field('timestamp', num));
  const nsec = BigInt(field('timestamp', num));
  const dirs: SnarDir[] = [];
  while (pos < b.length) {
    const nfs = field('nfs flag', /^[01]$/) === '1';
    const mtimeSec = BigInt(field('folder time', num));
    const mtimeNsec = BigInt(field('folder time', num));
    const dev = BigInt(field('device number', num));
    const ino = BigInt(field('inode number', num));
    const name = field('folder name', /^[^\0]+$/);
    const { entries, end } = parseListing(b, pos, file, name);
    pos = end;
    if (b[pos] !== 0) throw new PloneBackupError('ARCHIVE_BAD', `${file} lacks a record terminator after "${name.slice(0, 200)}".`, { path: file });
    pos++;
    dirs.push({ nfs, mtimeSec, mtimeNsec, dev, ino, name, dumpdir: entries });
  }
  return { sec, nsec, dirs };
}

/** A snar folder name as a relative path ('' for the root); unsafe ones are ARCHIVE_BAD. */
function snarDirPath(name: string, file: string): string {
  if (name === '.' || name === './') return '';
  return safeMemberPath(name, file);
}

/** The files a snapshot file records (its folders' 'Y' and 'N' entries): the state of the chain's last dump. */
export function snarFiles(snar: Snar, file = 'snapshot file'): Set<string> {
  const out = new Set<string>();
  for (const d of snar.dirs) {
    const dir = snarDirPath(d.name, file);
    for (const e of d.dumpdir) if (e.code === 'Y' || e.code === 'N') out.add(joinRel(dir, e.name));
  }
  return out;
}

// ---------------------------------------------------------------------------
// Writing

export interface IncrementalWriteOptions {
  /** The archive to make (`blobstorage.<STAMP>.tar[.gz]` or `.delta.tar[.gz]`); must not exist. */
  tar: string;
  /** The snapshot file: made by a full, read (unless `previous`) and replaced by a delta. */
  snar: string;
  /** The live blobstorage the files are read from. */
  root: string;
  /** The whole current file set, relative to `root` (blob files and `.layout`). */
  files: readonly string[];
  gzip?: boolean;
  signal?: AbortSignal;
  /** The archive's and the snapshot file's permission bits (owner only unless said). */
  mode?: number;
}

/**
 * A written archive and snapshot file under temp names. `commit` renames the
 * archive into place first, then the snapshot file: a crash in between leaves
 * the old snapshot, which only makes the next dump take the new files again,
 * never a snapshot naming files no archive holds.
 */
export interface PendingIncremental {
  tar: string;
  snar: string;
  /** Files this archive holds. */
  added: string[];
  /** Bytes of their contents. */
  bytes: number;
  /** commitArchive, then commitSnapshot. */
  commit(): Promise<void>;
  /** The archive into place. */
  commitArchive(): Promise<void>;
  /**
   * The snapshot file into place: a caller that registers something between the
   * two (the filestorage piece of the same stamp) does it here, in between.
   */
  commitSnapshot(): Promise<void>;
  discard(): Promise<void>;
}

/** A full listed-incremental archive of `files` and its new snapshot file. */
export async function writeIncrementalFull(o: IncrementalWriteOptions): Promise<PendingIncremental> {
  return writeIncremental(o, undefined);
}

/**
 * A delta: the files of `files` not in `previous` (by default the files the
 * snapshot file `o.snar` records), and a listing of every folder, so that the
 * files `previous` has and `files` lacks are deleted on extraction. The
 * snapshot file is replaced by one describing `files`.
 */
export async function writeIncrementalDelta(o: IncrementalWriteOptions & { previous?: ReadonlySet<string> }): Promise<PendingIncremental> {
  const previous = o.previous ?? snarFiles(await readSnar(o.snar), o.snar);
  return writeIncremental(o, previous);
}

interface PlanDir {
  rel: string;
  st: BigIntStats;
  entries: DumpdirEntry[];
}

/** The tree of a file set: the checked paths, and every folder on the way with its children (name → is a folder). */
function treeOfFiles(list: readonly string[], root: string): { files: Set<string>; kids: Map<string, Map<string, boolean>> } {
  const files = new Set<string>();
  const kids = new Map<string, Map<string, boolean>>([['', new Map()]]);
  for (const f of list) {
    const rel = safeMemberPath(f, root);
    if (rel !== f) throw new PloneBackupError('UNSAFE', `"${f.slice(0, 200)}" is not a plain relative path.`, { path: root });
    files.add(rel);
  }
  for (const rel of files) {
    let child = rel;
    let isDir = false;
    for (;;) {
      const dir = parentOf(child);
      let k = kids.get(dir);
      if (!k) kids.set(dir, (k = new Map()));
      const had = k.get(baseOf(child));
      if (had !== undefined && had !== isDir) throw new PloneBackupError('UNSAFE', `"${child.slice(0, 200)}" is given both as a file and as a folder.`, { path: root });
      k.set(baseOf(child), isDir);
      if (had !== undefined || dir === '') break;
      child = dir;
      isDir = true;
    }
  }
  for (const rel of files) if (kids.has(rel)) throw new PloneBackupError('UNSAFE', `"${rel.slice(0, 200)}" is given both as a file and as a folder.`, { path: root });
  return { files, kids };
}

async function writeIncremental(o: IncrementalWriteOptions, previous: ReadonlySet<string> | undefined): Promise<PendingIncremental> {
  // The snapshot's time is taken before anything is looked at: a file the
  // recipe's next `tar --listed-incremental` finds changed since is dumped
  // again, and one we do not list (a blob not yet committed) is dumped anyway,
  // since tar dumps every file its folder's listing lacks.
  const startMs = Date.now();
  const mode = o.mode ?? PRIVATE_MODES.file;
  const root = path.resolve(o.root);
  if (
    await fsp.lstat(o.tar).then(
      () => true,
      () => false,
    )
  ) {
    throw new PloneBackupError('WOULD_OVERWRITE', `${o.tar} already exists.`, { path: o.tar });
  }
  const { files, kids } = treeOfFiles(o.files, root);
  const plan: PlanDir[] = [];
  const byName = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));
  for (const rel of [...kids.keys()].sort()) {
    checkAbort(o.signal);
    const abs = rel === '' ? root : path.join(root, ...rel.split('/'));
    // The root may be reached through a link (it is the configured path); nothing below it is.
    const st = rel === '' ? await fsp.stat(abs, { bigint: true }) : await fsp.lstat(abs, { bigint: true });
    if (!st.isDirectory()) throw notABlobFile(abs, st.isSymbolicLink() ? 'link' : 'other');
    const entries = [...kids.get(rel)!]
      .sort(([a], [b]) => byName(a, b))
      .map(([name, isDir]): DumpdirEntry => ({ code: isDir ? 'D' : previous?.has(joinRel(rel, name)) ? 'N' : 'Y', name }));
    plan.push({ rel, st, entries });
  }

  const added = [...files].filter((f) => !previous?.has(f)).sort();
  const w = await HashingFileWriter.create(o.tar, { gzip: o.gzip, md5: false, mode });
  let snarTemp: string | undefined;
  let bytes = 0;
  try {
    for (const d of plan) {
      checkAbort(o.signal);
      const data = encodeListing(d.entries);
      if (data.length > MAX_DUMPDIR) throw new PloneBackupError('TOO_LARGE', `${path.join(root, d.rel)} holds too many entries for one archive listing.`, { path: root });
      const name = d.rel === '' ? './' : `./${d.rel}/`;
      await w.write(
        encodeGnuHeader({
          name,
          mode: Number(d.st.mode) & 0o7777,
          size: data.length,
          mtime: Number(d.st.mtimeMs / 1000n),
          type: DUMPDIR,
          uid: Number(d.st.uid),
          gid: Number(d.st.gid),
        }),
      );
      await w.write(Buffer.concat([data, Buffer.alloc(pad(data.length))]));
    }
    for (const rel of added) {
      checkAbort(o.signal);
      bytes += await writeMember(w, path.join(root, ...rel.split('/')), `./${rel}`, o.signal);
    }
    // The end: two zero blocks, and the archive padded to whole records as GNU tar does.
    const end = w.bytes + 2 * BLOCK;
    await w.write(Buffer.alloc(2 * BLOCK + ((RECORD - (end % RECORD)) % RECORD)));
    await w.finish();

    snarTemp = tempPath(o.snar);
    await writeNewFile(snarTemp, encodeSnar(startMs, plan), mode);
  } catch (e) {
    await w.discard();
    if (snarTemp) await fsp.rm(snarTemp, { force: true });
    throw e;
  }
  const snarT = snarTemp;
  const pending: PendingIncremental = {
    tar: w.temp,
    snar: snarT,
    added,
    bytes,
    async commit() {
      await pending.commitArchive();
      await pending.commitSnapshot();
    },
    async commitArchive() {
      await w.commit();
      await fsyncDir(path.dirname(o.tar));
    },
    async commitSnapshot() {
      await fileLayer.rename(snarT, o.snar);
      await fsyncDir(path.dirname(o.snar));
    },
    async discard() {
      await fsp.rm(w.temp, { force: true });
      await fsp.rm(snarT, { force: true });
    },
  };
  return pending;
}

/** A snapshot file (format 2) of `plan`, dumped from `startMs` on. */
function encodeSnar(startMs: number, plan: readonly PlanDir[]): Buffer {
  const sec = BigInt(Math.floor(startMs / 1000));
  const nsec = BigInt((startMs % 1000) * 1_000_000);
  const parts: Buffer[] = [Buffer.from(`${SNAR_HEADER}${sec}\0${nsec}\0`)];
  for (const d of plan) {
    const name = d.rel === '' ? '.' : `./${d.rel}`;
    const mtimeSec = d.st.mtimeNs / 1_000_000_000n;
    const mtimeNsec = d.st.mtimeNs % 1_000_000_000n;
    parts.push(Buffer.from(`0\0${mtimeSec}\0${mtimeNsec}\0${d.st.dev}\0${d.st.ino}\0${name}\0`, 'utf8'), encodeListing(d.entries), Buffer.alloc(1));
  }
  return Buffer.concat(parts);
}

/** One file member: header and contents, read without following a link; returns its size. */
async function writeMember(w: HashingFileWriter, abs: string, name: string, signal?: AbortSignal): Promise<number> {
  let fh: FileHandle;
  try {
    fh = await fsp.open(abs, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ELOOP') throw notABlobFile(abs, 'link');
    throw e;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw notABlobFile(abs, 'other');
    await w.write(encodeGnuHeader({ name, mode: st.mode & 0o7777, size: st.size, mtime: st.mtimeMs / 1000, type: '0', uid: st.uid, gid: st.gid }));
    // readRange: SOURCE_CHANGED when the file is shorter than its stat said.
    for await (const c of readRange(fh, 0, st.size, signal, 1 << 20)) await w.write(c);
    const p = pad(st.size);
    if (p) await w.write(Buffer.alloc(p));
    return st.size;
  } finally {
    await fh.close();
  }
}

/**
 * Tar archives of blob trees (collective.recipe.backup's blobstorage.*.tar
 * and .tar.gz, and our zip backups): ustar headers, encoded and decoded
 * symmetrically, GNU long names and pax paths read, plain files and folders
 * only. GNU tar's --listed-incremental dumpdir members (type 'D') are read
 * as folders, or with their listings for incremental.ts.
 *
 * Extraction never writes outside its target: an absolute name, a `..`
 * segment, a link or device entry is refused with ARCHIVE_BAD before anything
 * is written for it.
 */

import { constants as fsc, createReadStream, promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { PloneBackupError, checkAbort } from '../base/errors';
import { ByteReader } from '../base/streams';
import { PRIVATE_MODES, fileLayer, writeAll, type Modes } from '../base/io';
import { notABlobFile } from '../zodb/blobdir';

const BLOCK = 512;

export interface TarHeader {
  name: string;
  mode: number;
  size: number;
  mtime: number;
  type: string;
}

function writeOctal(b: Buffer, off: number, len: number, v: number): void {
  const s = v.toString(8).padStart(len - 1, '0');
  if (s.length > len - 1) {
    // base-256 for values that do not fit in octal (files over 8 GiB)
    b[off] = 0x80;
    let x = BigInt(v);
    for (let i = len - 1; i > 0; i--) {
      b[off + i] = Number(x & 0xffn);
      x >>= 8n;
    }
    return;
  }
  b.write(s, off, len - 1, 'latin1');
  b[off + len - 1] = 0;
}

function readNumber(b: Buffer, off: number, len: number): number {
  if (b[off]! & 0x80) {
    let v = 0n;
    for (let i = 1; i < len; i++) v = (v << 8n) | BigInt(b[off + i]!);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) return NaN;
    return Number(v);
  }
  const s = b
    .toString('latin1', off, off + len)
    .replace(/\0.*$/s, '')
    .trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) return NaN;
  return parseInt(s, 8);
}

function cstr(b: Buffer, off: number, len: number): string {
  const end = b.indexOf(0, off);
  return b.toString('utf8', off, end < 0 || end > off + len ? off + len : end);
}

function checksum(b: Buffer): number {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : b[i]!;
  return sum;
}

/** One or more 512-byte blocks: a pax header first when the name does not fit ustar. */
export function encodeHeader(h: TarHeader): Buffer {
  const nameBytes = Buffer.from(h.name, 'utf8');
  let name = h.name;
  let prefix = '';
  const pre: Buffer[] = [];
  if (nameBytes.length > 100) {
    const cut = h.name.lastIndexOf('/', 155);
    if (cut > 0 && Buffer.byteLength(h.name.slice(cut + 1)) <= 100 && Buffer.byteLength(h.name.slice(0, cut)) <= 155) {
      prefix = h.name.slice(0, cut);
      name = h.name.slice(cut + 1);
    } else {
      const rec = (k: string, v: string) => {
        const body = ` ${k}=${v}\n`;
        let n = Buffer.byteLength(body) + 1;
        while (String(n).length + Buffer.byteLength(body) !== n) n = String(n).length + Buffer.byteLength(body);
        return `${n}${body}`;
      };
      const data = Buffer.from(rec('path', h.name), 'utf8');
      pre.push(encodeHeader({ name: 'PaxHeader', mode: 0o644, size: data.length, mtime: h.mtime, type: 'x' }), data, Buffer.alloc(pad(data.length)));
      name = h.name.slice(0, 100);
    }
  }
  const b = Buffer.alloc(BLOCK);
  b.write(name, 0, 100, 'utf8');
  writeOctal(b, 100, 8, h.mode & 0o7777);
  writeOctal(b, 108, 8, 0);
  writeOctal(b, 116, 8, 0);
  writeOctal(b, 124, 12, h.size);
  writeOctal(b, 136, 12, Math.floor(h.mtime));
  b.write(h.type, 156, 1, 'latin1');
  b.write('ustar\0', 257, 6, 'latin1');
  b.write('00', 263, 2, 'latin1');
  b.write(prefix, 345, 155, 'utf8');
  const sum = checksum(b);
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'latin1');
  return Buffer.concat([...pre, b]);
}

export function decodeHeader(b: Buffer, where = 'archive'): TarHeader | null {
  if (b.every((x) => x === 0)) return null;
  const stored = readNumber(b, 148, 8);
  if (stored !== checksum(b)) {
    throw new PloneBackupError('ARCHIVE_BAD', `${where} is not a tar archive or is damaged (bad header checksum).`, {
      path: where,
      hint: 'Use another backup; this archive cannot be trusted.',
    });
  }
  const size = readNumber(b, 124, 12);
  if (!Number.isFinite(size) || size < 0) {
    throw new PloneBackupError('ARCHIVE_BAD', `${where} has an entry with an impossible size.`, { path: where });
  }
  let name = cstr(b, 0, 100);
  // Only POSIX ustar ("ustar\0") has a name prefix at 345; GNU's own format
  // ("ustar  \0", what GNU tar writes by default) keeps atime and ctime there,
  // which --listed-incremental fills: read as a prefix they would garble names.
  if (b.toString('latin1', 257, 263) === 'ustar\0') {
    const prefix = cstr(b, 345, 155);
    if (prefix) name = `${prefix}/${name}`;
  }
  const t = String.fromCharCode(b[156] || 0x30);
  return { name, mode: readNumber(b, 100, 8) || 0o644, size, mtime: readNumber(b, 136, 12) || 0, type: t };
}

export const pad = (n: number) => (BLOCK - (n % BLOCK)) % BLOCK;

/**
 * One member header in GNU tar's own format (magic "ustar  \0"), as GNU tar
 * writes by default and needs for its incremental members: a name over 100
 * bytes goes into a preceding 'L' (././@LongLink) record, never a ustar
 * prefix or pax record. Owner ids are kept (GNU tar restores them when run
 * as root, as it would from its own archive); no user or group names.
 */
export function encodeGnuHeader(h: TarHeader & { uid?: number; gid?: number }): Buffer {
  const nameBytes = Buffer.from(h.name, 'utf8');
  const pre: Buffer[] = [];
  if (nameBytes.length > 100) {
    const data = Buffer.concat([nameBytes, Buffer.alloc(1)]);
    pre.push(encodeGnuHeader({ name: '././@LongLink', mode: 0o644, size: data.length, mtime: 0, type: 'L' }), data, Buffer.alloc(pad(data.length)));
  }
  const b = Buffer.alloc(BLOCK);
  nameBytes.copy(b, 0, 0, Math.min(100, nameBytes.length));
  writeOctal(b, 100, 8, h.mode & 0o7777);
  writeOctal(b, 108, 8, h.uid ?? 0);
  writeOctal(b, 116, 8, h.gid ?? 0);
  writeOctal(b, 124, 12, h.size);
  writeOctal(b, 136, 12, Math.max(0, Math.floor(h.mtime)));
  b.write(h.type, 156, 1, 'latin1');
  b.write('ustar  \0', 257, 8, 'latin1');
  const sum = checksum(b);
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'latin1');
  return Buffer.concat([...pre, b]);
}

/** GNU tar's dumpdir member type: a folder whose data lists its entries (see incremental.ts). */
export const DUMPDIR = 'D';
/** The largest dumpdir we read into memory: a folder of a million entries is about 25 MB. */
export const MAX_DUMPDIR = 64 << 20;

/** Checks a member name and returns it relative, or throws: nothing may land outside the target. */
export function safeMemberPath(name: string, where = 'archive'): string {
  const n = name.replace(/^(\.\/)+/, '').replace(/\/+$/, '');
  const parts = n.split('/');
  if (n === '' || name.startsWith('/') || /^[A-Za-z]:/.test(name) || name.includes('\\') || parts.some((p) => p === '..' || p === '') || name.includes('\0')) {
    throw new PloneBackupError('ARCHIVE_BAD', `${where} holds an unsafe path "${name.slice(0, 200)}"; nothing was extracted.`, {
      path: where,
      hint: 'The archive was not made by a backup tool; do not use it.',
    });
  }
  return n;
}

export interface TarEntry {
  /** Name inside the archive. */
  name: string;
  /** File to read its content from; undefined for a folder. */
  source?: string;
  size: number;
  mode: number;
  mtime: number;
}

/**
 * Writes a tar (optionally gzip) of `entries` to a temp file; the caller
 * renames it. `mode`: the archive file's permission bits (owner only unless
 * said). Sources are read without following a link (refused as UNSAFE).
 */
export async function writeTar(target: string, entries: TarEntry[], opts: { gzip?: boolean; signal?: AbortSignal; mode?: number } = {}): Promise<void> {
  const fh = await fileLayer.open(target, 'wx', opts.mode ?? PRIVATE_MODES.file);
  try {
    let pos = 0;
    const out = async (b: Buffer) => {
      await writeAll(fh, b, pos, target);
      pos += b.length;
    };
    let sink = out;
    let gz: zlib.Gzip | undefined;
    let gzDone: Promise<void> | undefined;
    const gzQueue: Promise<void>[] = [];
    if (opts.gzip) {
      gz = zlib.createGzip();
      const g = gz;
      let chain = Promise.resolve();
      gzDone = new Promise<void>((resolve, reject) => {
        g.on('data', (c: Buffer) => {
          chain = chain.then(() => out(c));
          gzQueue.push(chain);
        });
        g.on('end', () => chain.then(resolve, reject));
        g.on('error', reject);
      });
      sink = async (b: Buffer) => {
        if (!g.write(b)) await new Promise<void>((r) => g.once('drain', r));
      };
    }
    for (const e of entries) {
      checkAbort(opts.signal);
      await sink(encodeHeader({ name: e.name, mode: e.mode, size: e.source ? e.size : 0, mtime: e.mtime, type: e.source ? '0' : '5' }));
      if (!e.source) continue;
      const src = await fsp.open(e.source, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK).catch((err: NodeJS.ErrnoException) => {
        throw err.code === 'ELOOP' ? notABlobFile(e.source!, 'link') : err;
      });
      try {
        if (!(await src.stat()).isFile()) throw notABlobFile(e.source, 'other');
        let done = 0;
        while (done < e.size) {
          const chunk = Buffer.allocUnsafe(Math.min(1 << 20, e.size - done));
          const { bytesRead } = await src.read(chunk, 0, chunk.length, done);
          if (bytesRead === 0) {
            throw new PloneBackupError('SOURCE_CHANGED', `${e.source} shrank while it was archived.`, { path: e.source });
          }
          await sink(chunk.subarray(0, bytesRead));
          done += bytesRead;
        }
      } finally {
        await src.close();
      }
      const p = pad(e.size);
      if (p) await sink(Buffer.alloc(p));
    }
    await sink(Buffer.alloc(BLOCK * 2));
    if (gz) {
      gz.end();
      await gzDone;
      await Promise.all(gzQueue);
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Reads an archive's members in order; `onEntry` gets each file's content as
 * chunks, and a folder with no content. A GNU dumpdir member (type 'D') is a
 * folder too, unless `dumpdirs`: then `onEntry` gets it with its listing as
 * content, and the archive's root (rel '') is passed as well.
 */
export async function readTar(
  file: string,
  opts: { gzip?: boolean; signal?: AbortSignal; dumpdirs?: boolean },
  onEntry: (h: TarHeader, rel: string, content: AsyncGenerator<Buffer> | undefined) => Promise<void>,
): Promise<void> {
  const src = createReadStream(file, { highWaterMark: 1 << 20 });
  const stream = opts.gzip ? src.pipe(zlib.createGunzip()) : src;
  if (opts.gzip) src.on('error', (e) => (stream as zlib.Gunzip).destroy(e));
  const it = (stream as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  const r = new ByteReader(it);
  let longName: string | undefined;
  // What the callback throws (a full disk while extracting) is not the archive's fault.
  let fromCallback: unknown;
  const take = async (n: number): Promise<Buffer> => {
    try {
      return await r.take(n);
    } catch (e) {
      if (PloneBackupError.is(e)) throw e;
      throw new PloneBackupError('ARCHIVE_BAD', `${file} cannot be read (${(e as Error).message}).`, { path: file, cause: e });
    }
  };
  const call = async (...a: Parameters<typeof onEntry>): Promise<void> => {
    try {
      await onEntry(...a);
    } catch (e) {
      fromCallback = e;
      throw e;
    }
  };
  try {
    for (;;) {
      checkAbort(opts.signal);
      const hb = await take(BLOCK);
      if (hb.length === 0) break; // some writers omit the end blocks
      if (hb.length < BLOCK) throw new PloneBackupError('ARCHIVE_BAD', `${file} ends in the middle of a header.`, { path: file });
      const h = decodeHeader(hb, file);
      if (!h) break;
      const body = async function* (): AsyncGenerator<Buffer> {
        let left = h.size;
        while (left > 0) {
          const c = await take(Math.min(left, 1 << 20));
          if (c.length === 0) throw new PloneBackupError('ARCHIVE_BAD', `${file} ends in the middle of ${h.name}.`, { path: file });
          left -= c.length;
          yield c;
        }
        const p = pad(h.size);
        if (p) await take(p);
      };
      if (h.type === 'L' || h.type === 'x') {
        const parts: Buffer[] = [];
        if (h.size > 1 << 20) throw new PloneBackupError('ARCHIVE_BAD', `${file} has an oversized ${h.type} header.`, { path: file });
        for await (const c of body()) parts.push(c);
        const text = Buffer.concat(parts).toString('utf8');
        if (h.type === 'L') longName = text.replace(/\0.*$/s, '');
        else {
          const m = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(text);
          if (m) longName = m[1];
        }
        continue;
      }
      const name = longName ?? h.name;
      longName = undefined;
      if (h.type === 'g') {
        for await (const _ of body()) void _;
        continue;
      }
      const isRoot = name === './' || name === '.';
      if (h.type === DUMPDIR) {
        // GNU tar's --listed-incremental folder member: its data lists the
        // folder's entries. Held in memory by whoever reads it, so bounded.
        if (h.size > MAX_DUMPDIR) {
          throw new PloneBackupError('ARCHIVE_BAD', `${file} has a folder listing (dumpdir) of ${h.size} bytes for "${name.slice(0, 200)}", beyond any real one.`, {
            path: file,
            hint: 'The archive is damaged or was not made by a backup tool; nothing was extracted from it.',
          });
        }
        const rel = isRoot ? '' : safeMemberPath(name, file);
        if (opts.dumpdirs) {
          const gen = body();
          await call(h, rel, gen);
          for await (const _ of gen) void _;
        } else {
          // Read without --incremental (as the recipe restores a lone full
          // archive), a dumpdir member is just its folder.
          for await (const _ of body()) void _;
          if (!isRoot) await call(h, rel, undefined);
        }
        continue;
      }
      // The archive's own root, as `tar -C blobstorage .` writes it first: nothing to make.
      if (h.type === '5' && isRoot) {
        if (opts.dumpdirs) await call(h, '', undefined);
        continue;
      }
      const rel = safeMemberPath(name, file);
      if (h.type === '0' || h.type === '\0' || h.type === '7') {
        const gen = body();
        await call(h, rel, gen);
        for await (const _ of gen) void _; // drain what the callback did not read
      } else if (h.type === '5') {
        await call(h, rel, undefined);
      } else {
        throw new PloneBackupError('ARCHIVE_BAD', `${file} holds a link or device entry "${name}", which a blob backup never has.`, {
          path: file,
          hint: 'Nothing was extracted from it.',
        });
      }
    }
  } catch (e) {
    if (PloneBackupError.is(e) || (e === fromCallback && e !== undefined)) throw e;
    throw new PloneBackupError('ARCHIVE_BAD', `${file} cannot be read (${(e as Error).message}).`, { path: file, cause: e });
  } finally {
    await r.close().catch(() => undefined);
    src.destroy();
  }
}

/**
 * Extracts an archive under `dest` (which must exist), only plain files and
 * folders. `prefix`: members under a top folder of this name are taken
 * without it, members at the root as they are; a blob archive is either
 * collective.recipe.backup's (`tar -C blobstorage .`: the tree at the root)
 * or one written by earlier plone-backup builds (under `blobstorage/`).
 */
export async function extractTar(file: string, dest: string, opts: { gzip?: boolean; signal?: AbortSignal; prefix?: string; modes?: Modes } = {}): Promise<number> {
  // A member's mode comes from the archive: only its read/write bits, within the restored Data.fs's.
  const modes = opts.modes ?? PRIVATE_MODES;
  let files = 0;
  const root = path.resolve(dest);
  await readTar(file, opts, async (h, rel, content) => {
    let parts = rel.split('/');
    if (opts.prefix !== undefined && parts[0] === opts.prefix) parts = parts.slice(1);
    if (parts.length === 0) return;
    const target = path.join(root, ...parts);
    if (!target.startsWith(root + path.sep)) throw new PloneBackupError('ARCHIVE_BAD', `${file} holds an unsafe path "${rel}".`, { path: file });
    // A member twice, or a file where a folder is (or the other way round): not an archive a backup made.
    const clash = (e: unknown): never => {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EEXIST' || code === 'ENOTDIR' || code === 'EISDIR') {
        throw new PloneBackupError('ARCHIVE_BAD', `${file} holds "${rel}" twice, or as both a file and a folder; nothing more was extracted.`, {
          path: file,
          hint: 'Use another backup; this archive cannot be trusted.',
        });
      }
      throw e;
    };
    if (!content) {
      await fileLayer.mkdir(target, { recursive: true, mode: modes.dir }).catch(clash);
      return;
    }
    await fileLayer.mkdir(path.dirname(target), { recursive: true, mode: modes.dir }).catch(clash);
    let out: FileHandle | undefined;
    try {
      out = await fileLayer.open(target, 'wx', (h.mode & 0o666 || 0o600) & modes.file).catch(clash);
      let pos = 0;
      for await (const c of content) {
        // A short write (a disk filling up) must not leave a short file behind.
        await writeAll(out, c, pos, target);
        pos += c.length;
      }
    } finally {
      await out?.close();
    }
    files++;
  });
  return files;
}

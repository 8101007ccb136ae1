/**
 * Where generations are pushed to and pulled from: object storage
 * (`s3://BUCKET/PREFIX`, any S3-compatible server) or a folder
 * (`file:///mnt/backups/site`, a mounted disk or NFS), behind one small
 * interface so that push, pull and verify are one code for both.
 *
 * Keys are relative, `/`-separated, made only by layout.ts (never taken from
 * what a remote says without being checked there). Objects are written once
 * and never changed: `put` and `upload` refuse to replace an existing key
 * (S3's `If-None-Match: *`; a hard link of a finished temp file on a folder)
 * and say `exists` instead, which is what makes two pushes at once harmless.
 *
 * S3: the SDK's own chain finds the credentials (AWS_ACCESS_KEY_ID /
 * AWS_SECRET_ACCESS_KEY, AWS_PROFILE and ~/.aws, instance roles) so that
 * cron lines carry no secret; the endpoint is `--endpoint`, else the
 * configuration's `remote.endpoint`, else AWS_ENDPOINT_URL_S3, else
 * AWS_ENDPOINT_URL; with an endpoint, addressing is path-style (what
 * S3-compatible servers expect) and the region defaults to us-east-1.
 * Checksums are computed by us, never by the SDK's streaming trailers (Ceph
 * RGW 16 refuses those): every single-request upload carries Content-MD5
 * (checked by every S3 server) and x-amz-checksum-sha256 (checked where the
 * server supports it; RGW 16 ignores it), and our SHA-256 of every object is
 * in the generation's manifest, checked on every download. Large objects go
 * up in parts (s3.ts), an interrupted upload continued by the next push;
 * their size is checked afterwards.
 *
 * Nothing here prints credentials: a URL carrying any is refused without
 * being repeated, and errors name the operation, the key and the server's
 * error code only.
 */

import { createHash, randomBytes } from 'node:crypto';
import { constants as fsc, promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { PloneBackupError, checkAbort } from '../base/errors';
import type { KeySource } from './crypt';
import { fileLayer, fsyncDir, readFileCapped, tempPath, writeAll } from '../base/io';
import { pidAlive } from '../base/lock';

/** What a push or pull cost: requests sent (retries included), bytes up and down. */
export interface RemoteStats {
  requests: number;
  uploaded: number;
  downloaded: number;
  /** Objects written (put or uploaded), and keys that were already there. */
  written: number;
  existed: number;
  /** Parts of multipart uploads sent, and bytes of parts an interrupted upload already held (not sent again). */
  parts: number;
  resumed: number;
  /** Temp files that killed writes left in a folder target, removed (see FileTarget). */
  cleaned: number;
}

/**
 * A write that was started and never finished: on S3 an open multipart
 * upload (`key` the object it writes, `id` its upload id), in a folder a
 * temp file (`key` its name under the target, `id` that too).
 */
export interface UnfinishedWrite {
  key: string;
  id: string;
  /** When it was started (S3) or last written (a temp file), in ms since the epoch. */
  started: number;
}

/** How long a temp file of a folder target may go unwritten before its writer counts as dead (a live one writes all the time). */
export const WRITER_STALE_MS = 30 * 60_000;

export interface ObjectChecksums {
  size: number;
  /** Hex digests of the object's bytes. */
  sha256: string;
  md5?: string;
}

export interface RemoteTarget {
  /** The URL as the user gave it (never with credentials). */
  readonly url: string;
  readonly stats: RemoteStats;
  /**
   * Keys directly under `prefix` (which ends with `/`, or is empty: the
   * target's root), names only, every page; `recursive`: every key below it,
   * relative to it; `limit`: at most that many.
   */
  list(prefix: string, signal?: AbortSignal, opts?: RemoteListOptions): Promise<string[]>;
  /** The object's size, or undefined when there is none. */
  head(key: string, signal?: AbortSignal): Promise<{ size: number } | undefined>;
  /** A small object whole (a manifest), at most `maxBytes`; undefined when there is none. */
  get(key: string, maxBytes: number, signal?: AbortSignal): Promise<Buffer | undefined>;
  /** The object's bytes as a stream (a download into a temp file; the caller hashes). */
  stream(key: string, signal?: AbortSignal): Promise<AsyncIterable<Uint8Array>>;
  /** Bytes `start` up to `end` (excluded) of an object (a slice of a pack, layout.ts); REMOTE_BAD when it has fewer, undefined when there is none. */
  getRange(key: string, start: number, end: number, signal?: AbortSignal): Promise<Buffer | undefined>;
  /** Writes a small object unless the key exists. */
  put(key: string, body: Buffer, sums: ObjectChecksums, signal?: AbortSignal): Promise<'written' | 'exists'>;
  /** Writes the file `file` (of `sums.size` bytes) as the object unless the key exists. */
  upload(key: string, file: string, sums: ObjectChecksums, signal?: AbortSignal): Promise<'written' | 'exists'>;
  /** Writes `size` bytes from `body` as the object unless the key exists (an encrypted upload: never held whole when large). */
  uploadStream(key: string, size: number, body: AsyncIterable<Uint8Array>, signal?: AbortSignal): Promise<'written' | 'exists'>;
  /** Deletes the keys (a key that is not there is no error). */
  delete(keys: string[], signal?: AbortSignal): Promise<void>;
  /**
   * The unfinished writes that no live push can be continuing (forget.ts
   * ends them under the forget lock, when no push runs): on S3, the open
   * multipart uploads below the target's prefix started more than
   * `olderThanMs` ago (a younger one is left for the next push to continue),
   * or of a key whose object is there already (no push continues those); in
   * a folder, the temp files of writers that are dead (this host's, by their
   * pid) or wrote nothing for WRITER_STALE_MS (nothing continues a temp file).
   * Optional: a view over another target (crypt.ts) has none; ask its inner one.
   */
  unfinishedWrites?(olderThanMs: number, signal?: AbortSignal): Promise<UnfinishedWrite[]>;
  /** Ends them: aborts the uploads, removes the temp files. */
  discardWrites?(writes: UnfinishedWrite[], signal?: AbortSignal): Promise<void>;
  close(): void;
}

export interface RemoteListOptions {
  recursive?: boolean;
  limit?: number;
}

export interface TargetOptions {
  /** `--endpoint` or the configuration's `remote.endpoint` (they win over the environment). */
  endpoint?: string;
  env?: NodeJS.ProcessEnv;
  /** Objects at least this large go up in parts (default 64 MiB; at least 5 MiB, S3's minimum part). */
  multipartThreshold?: number;
  /** The key of an encrypted target (crypt.ts); undefined: the target must be plain. */
  key?: KeySource;
  /** A push: the marker of an encrypted target that holds nothing yet may be written. */
  create?: boolean;
  signal?: AbortSignal;
  /** S3 credentials given explicitly (the extension's SecretStorage), over the SDK's default chain; never printed. */
  credentials?: RemoteCredentials;
}

export interface RemoteCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export const DEFAULT_MULTIPART = 64 << 20;
const MIN_PART = 5 << 20;

function remoteBad(message: string, hint: string): PloneBackupError {
  return new PloneBackupError('REMOTE_BAD', message, { hint });
}

/** Parses `s3://BUCKET[/PREFIX]` or `file:///DIR`; refuses anything else, and credentials in the URL (without repeating them). */
export function parseRemoteUrl(url: string): { scheme: 's3'; bucket: string; prefix: string } | { scheme: 'file'; dir: string } {
  if (typeof url !== 'string' || url.length === 0 || url.length > 2048) throw remoteBad('The remote URL is empty or too long.', 'Give s3://BUCKET/PREFIX or file:///FOLDER.');
  if (url.startsWith('file://')) {
    const dir = decodeURIComponent(url.slice('file://'.length));
    if (!path.isAbsolute(dir) || dir.includes('\0')) throw remoteBad(`The remote URL ${url} does not name an absolute folder.`, 'Write file:///absolute/path (three slashes).');
    return { scheme: 'file', dir: path.resolve(dir) };
  }
  const m = /^s3:\/\/([^/]*)(?:\/(.*))?$/.exec(url);
  if (!m) throw remoteBad(`The remote URL ${url.replace(/\/\/[^@/]*@/, '//…@')} is neither s3:// nor file://.`, 'Give s3://BUCKET/PREFIX or file:///FOLDER.');
  const bucket = m[1]!;
  if (bucket.includes('@') || bucket.includes(':'))
    throw remoteBad(
      'The remote URL carries credentials; they are never taken from a URL.',
      'Remove them from the URL: credentials come from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or an AWS profile (AWS_PROFILE, ~/.aws).',
    );
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket))
    throw remoteBad(`The bucket name "${bucket}" is not a valid S3 bucket name.`, 'Bucket names are 3 to 63 lowercase letters, digits, dots and hyphens.');
  const prefix = (m[2] ?? '').replace(/\/+$/, '');
  if (prefix.split('/').some((p) => p === '..' || p === '.' || (p === '' && prefix !== '')) || /[\0\\]/.test(prefix)) {
    throw remoteBad(`The prefix of ${url} is not a plain path.`, 'Use a prefix of names separated by single slashes, without . or ..');
  }
  return { scheme: 's3', bucket, prefix };
}

/** The endpoint an S3 target uses, by precedence; checked to be an http(s) URL without credentials. */
export function resolveEndpoint(opts: TargetOptions): string | undefined {
  const env = opts.env ?? process.env;
  const e = opts.endpoint || env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL || undefined;
  if (e === undefined) return undefined;
  let u: URL;
  try {
    u = new URL(e);
  } catch {
    throw remoteBad('The S3 endpoint is not a URL.', 'Give it as http(s)://HOST[:PORT] (--endpoint, remote.endpoint, AWS_ENDPOINT_URL_S3).');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw remoteBad('The S3 endpoint is not an http(s) URL.', 'Give it as http(s)://HOST[:PORT].');
  if (u.username || u.password)
    throw remoteBad('The S3 endpoint carries credentials; they are never taken from a URL.', 'Remove them: credentials come from the AWS environment variables or profile.');
  return e;
}

/**
 * Opens the target a URL names, checked against the key (crypt.ts): with a
 * key, the encrypting view of an encrypted target; without, a plain one.
 * REMOTE_KEY when they do not go together, before anything else is done.
 */
export async function openTarget(url: string, opts: TargetOptions = {}): Promise<RemoteTarget> {
  const u = parseRemoteUrl(url);
  let t: RemoteTarget;
  if (u.scheme === 'file') t = new FileTarget(url, u.dir);
  else {
    const { S3Target } = await import('./s3');
    t = new S3Target(url, u.bucket, u.prefix, opts);
  }
  try {
    const { bindKey } = await import('./crypt');
    return await bindKey(t, opts.key, { create: opts.create, signal: opts.signal });
  } catch (e) {
    t.close();
    throw e;
  }
}

export function newStats(): RemoteStats {
  return { requests: 0, uploaded: 0, downloaded: 0, written: 0, existed: 0, parts: 0, resumed: 0, cleaned: 0 };
}

/** The hex SHA-256 and MD5 of a file, read once. */
export async function hashFile(file: string, signal?: AbortSignal): Promise<ObjectChecksums> {
  const sha = createHash('sha256');
  const md5 = createHash('md5');
  let size = 0;
  const fh = await openNoFollow(file);
  try {
    for await (const c of fh.createReadStream({ highWaterMark: 1 << 20, autoClose: false, signal })) {
      sha.update(c as Buffer);
      md5.update(c as Buffer);
      size += (c as Buffer).length;
    }
  } finally {
    await fh.close();
  }
  return { size, sha256: sha.digest('hex'), md5: md5.digest('hex') };
}

/** Opens a local file for reading, never through a link at its last component, never blocking on a FIFO; a regular file only. */
export async function openNoFollow(file: string): Promise<FileHandle> {
  const fh = await fsp.open(file, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
  if (!(await fh.stat()).isFile()) {
    await fh.close();
    throw new PloneBackupError('UNSAFE', `${file} is not a regular file; it is not pushed.`, { path: file, hint: 'Nothing but regular files belongs in a backup folder.' });
  }
  return fh;
}

/** A ranged read that found fewer bytes than its object should hold. */
export function shortRange(url: string, key: string, start: number, end: number): PloneBackupError {
  return new PloneBackupError('REMOTE_BAD', `The remote object ${key} in ${url} does not hold bytes ${start} to ${end} that a manifest names; it was not used.`, {
    path: key,
    hint: 'The copy on the remote is damaged: push again from a site that still has that backup, or restore another date.',
  });
}

export function hashBuffer(b: Buffer): ObjectChecksums {
  return { size: b.length, sha256: createHash('sha256').update(b).digest('hex'), md5: createHash('md5').update(b).digest('hex') };
}

/**
 * Downloads `key` into `dest` through a temp file beside it (fsynced, then
 * renamed): only when its size and SHA-256 are `expect`'s, else REMOTE_BAD
 * and nothing lands. Returns the bytes fetched.
 */
export async function downloadVerified(t: RemoteTarget, key: string, dest: string, expect: { size: number; sha256: string }, mode: number, signal?: AbortSignal): Promise<number> {
  const tmp = tempPath(dest, 'fetch');
  const sha = createHash('sha256');
  let size = 0;
  let fh: FileHandle | undefined;
  try {
    fh = await fileLayer.open(tmp, 'wx', mode);
    for await (const c of await t.stream(key, signal)) {
      checkAbort(signal);
      const b = Buffer.from(c.buffer, c.byteOffset, c.byteLength);
      size += b.length;
      if (size > expect.size) break;
      sha.update(b);
      await writeAll(fh, b, null, tmp);
    }
    t.stats.downloaded += size;
    const got = sha.digest('hex');
    if (size !== expect.size || got !== expect.sha256) {
      throw new PloneBackupError(
        'REMOTE_BAD',
        `The remote object ${key} in ${t.url} is not what its manifest says (${size > expect.size ? 'longer' : size !== expect.size ? `${size} bytes, not ${expect.size}` : 'its SHA-256 differs'}); it was not used.`,
        {
          path: key,
          hint: 'The copy on the remote is damaged: push again from a site that still has that backup, or restore another date.',
        },
      );
    }
    await fh.sync();
    await fh.close();
    fh = undefined;
    await fileLayer.rename(tmp, dest);
    await fsyncDir(path.dirname(dest));
    return size;
  } catch (e) {
    await fh?.close().catch(() => undefined);
    await fileLayer.rm(tmp, { force: true });
    throw e;
  }
}

/** The folder of a folder target's temp files, under its root (a `.plone-backup-` name: never listed as a key). */
export const FILE_TEMPS = '.plone-backup-tmp';
/** A temp file's name there: the writer's host (8 hex of its name's SHA-256), pid, and a random part. */
const TEMP_NAME = /^([0-9a-f]{8})\.(\d+)\.[0-9a-f]{8}\.put$/;
const hostTag = () => createHash('sha256').update(os.hostname()).digest('hex').slice(0, 8);

/**
 * A folder as a remote. Keys are joined to the folder only after layout.ts
 * made them (and they are checked again here: no `..`, no absolute path);
 * nothing is followed through a link. A write is a temp file (fsynced), then
 * a hard link to the key's name (EEXIST: someone else wrote it first), so a
 * reader never sees half an object.
 *
 * The temp files are all in one folder, `FILE_TEMPS` under the root (a hard
 * link from there to the key's name: one filesystem), named by their
 * writer's host and pid. A killed push leaves its temp file there; the first
 * write of every later run (a push's lock object is one) removes those whose
 * writer is dead (this host's, by pid) or that were not written for
 * WRITER_STALE_MS (another host's), with one listing of that folder, however
 * large the remote; forget does too. Regular files of that name only,
 * inside that folder, never through a link. An interrupted write is not
 * continued: a folder is a disk or a LAN share, where proving a partial file
 * byte for byte costs about as much as writing it again (README).
 */
export class FileTarget implements RemoteTarget {
  readonly stats = newStats();
  /** The temp files this target removed (their keys), in order: forget reports those of its run. */
  readonly cleanedTemps: string[] = [];
  private swept = false;
  constructor(
    readonly url: string,
    private readonly root: string,
  ) {}

  unfinishedWrites(): Promise<UnfinishedWrite[]> {
    return this.deadTemps();
  }

  async discardWrites(writes: UnfinishedWrite[]): Promise<void> {
    const dir = path.join(this.root, FILE_TEMPS);
    for (const w of writes) {
      if (!TEMP_NAME.test(w.id)) continue;
      // Only a regular file, never through a link (the name is ours; what is there may not be).
      const st = await fsp.lstat(path.join(dir, w.id)).catch(() => undefined);
      if (!st?.isFile()) continue;
      await fileLayer.rm(path.join(dir, w.id), { force: true });
      this.stats.cleaned++;
      this.cleanedTemps.push(`${FILE_TEMPS}/${w.id}`);
    }
  }

  /** The temp files of dead writers (see the class). */
  private async deadTemps(): Promise<UnfinishedWrite[]> {
    const dir = path.join(this.root, FILE_TEMPS);
    const st = await fsp.lstat(dir).catch(() => undefined);
    if (!st?.isDirectory()) return [];
    const me = hostTag();
    const out: UnfinishedWrite[] = [];
    for (const name of await fsp.readdir(dir)) {
      const m = TEMP_NAME.exec(name);
      if (!m) continue;
      const f = await fsp.lstat(path.join(dir, name)).catch(() => undefined);
      if (!f?.isFile()) continue;
      const pid = Number(m[2]);
      // Stale, whoever wrote it; or this host's, and its writer is gone.
      const dead = Date.now() - f.mtimeMs > WRITER_STALE_MS || (m[1] === me && pid !== process.pid && !pidAlive(pid));
      if (dead) out.push({ key: `${FILE_TEMPS}/${name}`, id: name, started: f.mtimeMs });
    }
    return out;
  }

  private file(key: string): string {
    if (key.split('/').some((p) => p === '' || p === '.' || p === '..') || key.includes('\\') || key.includes('\0')) throw new Error(`FileTarget: not a key: ${key}`);
    return path.join(this.root, ...key.split('/'));
  }

  async list(prefix: string, _signal?: AbortSignal, opts: RemoteListOptions = {}): Promise<string[]> {
    this.stats.requests++;
    const limit = opts.limit ?? Infinity;
    const out: string[] = [];
    const walk = async (dir: string, rel: string): Promise<void> => {
      const entries = await fsp.readdir(dir, { withFileTypes: true }).catch((e: NodeJS.ErrnoException) => {
        if (e.code === 'ENOENT' || (e.code === 'ENOTDIR' && rel !== '')) return [];
        throw this.failed('list', prefix, e);
      });
      for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
        if (out.length >= limit) return;
        if (e.name.startsWith('.plone-backup-')) continue; // temp files of a write in progress
        if (e.isFile()) out.push(rel + e.name);
        else if (opts.recursive && e.isDirectory()) await walk(path.join(dir, e.name), `${rel}${e.name}/`);
      }
    };
    await walk(prefix === '' ? this.root : this.file(prefix.replace(/\/$/, '')), '');
    return out;
  }

  async head(key: string): Promise<{ size: number } | undefined> {
    this.stats.requests++;
    const st = await fsp.lstat(this.file(key)).catch(() => undefined);
    return st?.isFile() ? { size: st.size } : undefined;
  }

  async get(key: string, maxBytes: number): Promise<Buffer | undefined> {
    this.stats.requests++;
    try {
      const b = await readFileCapped(this.file(key), maxBytes, { noFollow: true, what: 'The remote object' });
      this.stats.downloaded += b.length;
      return b;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      if (PloneBackupError.is(e))
        throw new PloneBackupError('REMOTE_BAD', `The remote object ${key} in ${this.url} is not a regular file of a sane size.`, {
          path: key,
          hint: 'Remove it from the remote, then push again.',
          cause: e,
        });
      throw this.failed('get', key, e);
    }
  }

  async stream(key: string): Promise<AsyncIterable<Uint8Array>> {
    this.stats.requests++;
    const f = this.file(key);
    const fh = await fsp.open(f, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK).catch((e: unknown) => {
      throw this.failed('get', key, e);
    });
    if (!(await fh.stat()).isFile()) {
      await fh.close();
      throw new PloneBackupError('REMOTE_BAD', `The remote object ${key} in ${this.url} is not a regular file.`, {
        path: key,
        hint: 'Remove it from the remote, then push again.',
      });
    }
    return fh.createReadStream({ highWaterMark: 1 << 20 }) as Readable;
  }

  async getRange(key: string, start: number, end: number): Promise<Buffer | undefined> {
    this.stats.requests++;
    let fh: FileHandle;
    try {
      fh = await fsp.open(this.file(key), fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw this.failed('get', key, e);
    }
    try {
      if (!(await fh.stat()).isFile()) throw shortRange(this.url, key, start, end);
      const b = Buffer.alloc(end - start);
      const { bytesRead } = await fh.read(b, 0, b.length, start);
      if (bytesRead !== b.length) throw shortRange(this.url, key, start, end);
      this.stats.downloaded += b.length;
      return b;
    } finally {
      await fh.close();
    }
  }

  async put(key: string, body: Buffer, _sums: ObjectChecksums): Promise<'written' | 'exists'> {
    return this.place(key, async (fh, tmp) => writeAll(fh, body, null, tmp), body.length);
  }

  async upload(key: string, file: string, sums: ObjectChecksums): Promise<'written' | 'exists'> {
    return this.place(
      key,
      async (fh, tmp) => {
        const src = await openNoFollow(file);
        try {
          for await (const c of src.createReadStream({ highWaterMark: 1 << 20, autoClose: false })) await writeAll(fh, c as Buffer, null, tmp);
        } finally {
          await src.close();
        }
      },
      sums.size,
    );
  }

  async uploadStream(key: string, size: number, body: AsyncIterable<Uint8Array>): Promise<'written' | 'exists'> {
    return this.place(
      key,
      async (fh, tmp) => {
        let n = 0;
        for await (const c of body) {
          n += c.byteLength;
          await writeAll(fh, Buffer.from(c.buffer, c.byteOffset, c.byteLength), null, tmp);
        }
        if (n !== size) throw new PloneBackupError('SOURCE_CHANGED', `${key}: ${n} bytes were written, not ${size}.`, { path: key, hint: 'Push again.' });
      },
      size,
    );
  }

  async delete(keys: string[]): Promise<void> {
    for (const key of keys) {
      this.stats.requests++;
      await fileLayer.rm(this.file(key), { force: true }).catch((e: unknown) => {
        throw this.failed('delete', key, e);
      });
    }
  }

  private async place(key: string, write: (fh: FileHandle, tmp: string) => Promise<void>, size: number): Promise<'written' | 'exists'> {
    this.stats.requests++;
    const dest = this.file(key);
    try {
      await fileLayer.mkdir(path.dirname(dest), { recursive: true, mode: 0o700 });
      if (
        await fsp.lstat(dest).then(
          () => true,
          () => false,
        )
      ) {
        this.stats.existed++;
        return 'exists';
      }
      const tmp = await this.tempFile();
      const fh = await fileLayer.open(tmp, 'wx', 0o600);
      try {
        await write(fh, tmp);
        await fh.sync();
      } catch (e) {
        await fh.close();
        await fileLayer.rm(tmp, { force: true });
        throw e;
      }
      await fh.close();
      try {
        await fileLayer.link(tmp, dest);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        this.stats.existed++;
        return 'exists';
      } finally {
        await fileLayer.rm(tmp, { force: true });
      }
      await fsyncDir(path.dirname(dest));
      this.stats.written++;
      this.stats.uploaded += size;
      return 'written';
    } catch (e) {
      throw this.failed('write', key, e);
    }
  }

  /** A fresh temp name in FILE_TEMPS; the first one of this target removes what dead writers left there (see the class). */
  private async tempFile(): Promise<string> {
    const dir = path.join(this.root, FILE_TEMPS);
    if (!this.swept) {
      await fileLayer.mkdir(dir, { recursive: true, mode: 0o700 });
      this.swept = true;
      await this.discardWrites(await this.deadTemps());
    }
    return path.join(dir, `${hostTag()}.${process.pid}.${randomBytes(4).toString('hex')}.put`);
  }

  private failed(op: string, key: string, e: unknown): PloneBackupError {
    if (PloneBackupError.is(e)) return e;
    const code = (e as NodeJS.ErrnoException).code ?? String(e);
    return new PloneBackupError('REMOTE_FAILED', `The ${op} of ${key} in ${this.url} failed (${code}).`, {
      path: key,
      hint: 'Check that the folder is mounted and writable.',
      cause: e,
    });
  }

  close(): void {}
}

export { MIN_PART };

/**
 * Client-side encryption of a remote (issue 12): AES-256-GCM through
 * node:crypto, the key never leaving the machine.
 *
 * The key: a key file (`--key-file`, `remote.keyFile`: at least 32 bytes,
 * e.g. `head -c 32 /dev/urandom`) or a passphrase (`PLONE_BACKUP_PASSPHRASE`,
 * or the variable `remote.passphraseEnv` names) stretched with scrypt. Either
 * gives a 32-byte master key (HKDF of the file's bytes; scrypt of the
 * passphrase) with the target's salt; three keys are derived from it with
 * HKDF-SHA256: one that encrypts, one that hides names, one whose HMAC is the
 * key check value.
 *
 * The marker `plone-backup-encryption.json` at the prefix is the one object
 * in clear: the format, the chunk size, how the key is made (scrypt and its
 * parameters, or a key file) with the salt, and the key check value. It says
 * the target is encrypted, so a run without the key, or with another one, is
 * refused (REMOTE_KEY) before anything is fetched or written; a plain target
 * has none, and a key given for it is refused too: the two never mix.
 *
 * An object: `PBENC1\0\0` | 16 random bytes | chunk size (u32 BE), then the
 * plaintext in chunks of that size, each sealed on its own with its 16-byte
 * tag (the last one, possibly empty, flagged final), so an object of any size
 * is encrypted and decrypted in one chunk of memory. Each object has its own
 * key (HKDF of the encryption key with the object's random bytes); a chunk's
 * nonce is its final flag and its number; its additional data is the header
 * and the object's (logical) key. So a chunk moved, dropped, reordered,
 * replayed from another object or cut off at the end fails authentication,
 * and so does an object put under another object's name.
 *
 * A file pushed (a piece, an index, a blob file) takes as its 16 bytes an
 * HMAC, under a key derived for it, of its name, size and plaintext SHA-256
 * instead of random ones: the same file under the same name is sealed into
 * the same bytes every time, so a multipart upload that was interrupted is
 * continued with parts that match the ones already sent (s3.ts). A key and
 * nonce are so used again only for the very same plaintext, which reveals
 * nothing beyond what the name already says (objects are never replaced).
 *
 * Packs (layout.ts) are stored as they are: each blob file in one is sealed
 * on its own as an object under its blob key (so a ranged GET of it opens
 * alone, and a slice moved to another entry fails), and the pack of sealed
 * slices is named by the SHA-256 of those bytes, which says nothing.
 *
 * Names: a blob file's key (`blobs/<oid>/<tid>.blob`) would say which
 * objects changed when; it becomes `blobs/<hh>/<62 hex>`, the HMAC of the
 * storage, oid and tid under the names key. Generation stamps stay visible
 * (`generations/<stamp>.json`, `pieces/<stamp>.fsz`, `indexes/<stamp>.index`,
 * `locks/`): listing needs them, and they say only when backups ran.
 */

import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync, randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import * as path from 'node:path';
import { PloneBackupError } from '../base/errors';
import { readFileCapped } from '../base/io';
import { type ObjectChecksums, type RemoteTarget, hashBuffer, openNoFollow } from './target';

export const MARKER_KEY = 'plone-backup-encryption.json';
export const MARKER_FORMAT = 'plone-backup-remote-encryption';
const MAGIC = Buffer.from('PBENC1\0\0', 'latin1');
const HEADER = MAGIC.length + 16 + 4;
const TAG = 16;
export const CRYPT_CHUNK = 64 << 10;
const MIN_CHUNK = 1 << 10;
const MAX_CHUNK = 4 << 20;
const DEFAULT_SCRYPT = { N: 1 << 15, r: 8, p: 1 };

/** Where the key comes from. Never holds the passphrase in a configuration: only in the environment. */
export interface KeySource {
  keyFile?: string;
  passphrase?: string;
  /** Where it came from, for messages: "--key-file /x", "PLONE_BACKUP_PASSPHRASE". Never the secret. */
  via: string;
}

interface Marker {
  format: typeof MARKER_FORMAT;
  version: 1;
  cipher: 'AES-256-GCM';
  chunk: number;
  kdf: { name: 'scrypt'; salt: string; N: number; r: number; p: number } | { name: 'keyfile'; salt: string };
  check: string;
}

function keyError(message: string, hint: string): PloneBackupError {
  return new PloneBackupError('REMOTE_KEY', message, { hint });
}

const HOW = 'Give the key it was pushed with: --key-file FILE (remote.keyFile), or the passphrase in PLONE_BACKUP_PASSPHRASE (or the variable remote.passphraseEnv names).';

/** The keys of one target, derived once. */
export class TargetKeys {
  private readonly salts: Buffer;
  private constructor(
    private readonly enc: Buffer,
    private readonly names: Buffer,
    readonly chunk: number,
  ) {
    this.salts = Buffer.from(hkdfSync('sha256', enc, Buffer.alloc(0), 'plone-backup object salt v1', 32));
  }

  static async derive(src: KeySource, marker: Marker): Promise<{ keys: TargetKeys; check: string }> {
    const salt = Buffer.from(marker.kdf.salt, 'base64');
    let master: Buffer;
    if (marker.kdf.name === 'scrypt') {
      if (src.passphrase === undefined)
        throw keyError(
          `The remote is encrypted with a passphrase, and ${src.via} is a key file.`,
          'Give the passphrase in PLONE_BACKUP_PASSPHRASE (or the variable remote.passphraseEnv names) instead.',
        );
      const { N, r, p } = marker.kdf;
      master = await new Promise<Buffer>((res, rej) =>
        scryptCb(src.passphrase!.normalize('NFC'), salt, 32, { N, r, p, maxmem: 256 * N * r + (1 << 20) } as ScryptOptions, (e, k) => (e ? rej(e) : res(k))),
      );
    } else {
      if (src.keyFile === undefined)
        throw keyError(`The remote is encrypted with a key file, and ${src.via} is a passphrase.`, 'Give the key file with --key-file FILE or remote.keyFile.');
      master = Buffer.from(hkdfSync('sha256', await readKeyFile(src.keyFile), salt, 'plone-backup key file v1', 32));
    }
    const sub = (info: string) => Buffer.from(hkdfSync('sha256', master, salt, info, 32));
    const check = createHmac('sha256', sub('plone-backup check v1')).update('plone-backup key check').digest('hex');
    return { keys: new TargetKeys(sub('plone-backup encrypt v1'), sub('plone-backup names v1'), marker.chunk), check };
  }

  /** The name a logical key has on the remote: blob files by HMAC, everything else as it is. */
  physical(key: string): string {
    // `<storage>/blobs/…`, or in a kind's space `<storage>/snapshot/blobs/…` (layout.ts).
    const m = /^([^/]+(?:\/[a-z]+)?)\/blobs\/([0-9a-f]{16})\/([0-9a-f]{16})\.blob$/.exec(key);
    if (!m) return key;
    const h = createHmac('sha256', this.names).update(`${m[1]}\0${m[2]}\0${m[3]}`).digest('hex');
    return `${m[1]}/blobs/${h.slice(0, 2)}/${h.slice(2)}`;
  }

  /** The stored size of `plain` bytes. */
  sealedSize(plain: number): number {
    return HEADER + plain + TAG * Math.max(1, Math.ceil(plain / this.chunk));
  }

  /** The plaintext size of a stored object of `sealed` bytes, or -1 when no object has that size. */
  plainSize(sealed: number): number {
    const body = sealed - HEADER;
    if (body < TAG) return -1;
    const n = Math.ceil(body / (this.chunk + TAG));
    const plain = body - n * TAG;
    return plain >= 0 && Math.max(1, Math.ceil(plain / this.chunk)) === n ? plain : -1;
  }

  private objectKey(salt: Buffer): Buffer {
    return Buffer.from(hkdfSync('sha256', this.enc, salt, 'plone-backup object v1', 32));
  }

  /**
   * A new object's header, its key and the data every chunk authenticates
   * (the header and the object's name). The salt: `of` a file (its size and
   * SHA-256) gives the same one for the same content under the same name
   * (see the header); else fresh random bytes.
   */
  private newObject(key: string, of?: { size: number; sha256: string }): { header: Buffer; k: Buffer; aad: Buffer } {
    const salt = of ? createHmac('sha256', this.salts).update(`${key}\0${of.size}\0${of.sha256}`).digest().subarray(0, 16) : randomBytes(16);
    const header = Buffer.alloc(HEADER);
    MAGIC.copy(header);
    salt.copy(header, MAGIC.length);
    header.writeUInt32BE(this.chunk, MAGIC.length + 16);
    const k = this.objectKey(salt);
    return { header, k, aad: Buffer.concat([header, Buffer.from(key, 'utf8')]) };
  }

  /** Encrypts a stream; `expect` (size, SHA-256) is checked before the final chunk, so a source that changed never completes an object. */
  async *seal(key: string, src: AsyncIterable<Uint8Array>, expect?: { size: number; check: () => string; update: (b: Buffer) => void; sha256: string }): AsyncGenerator<Buffer> {
    const { header, k, aad } = this.newObject(key, expect);
    yield header;
    let buf: Buffer = Buffer.alloc(0);
    let i = 0;
    let size = 0;
    for await (const c of src) {
      const b = Buffer.from(c.buffer, c.byteOffset, c.byteLength);
      size += b.length;
      expect?.update(b);
      buf = buf.length ? Buffer.concat([buf, b]) : b;
      while (buf.length > this.chunk) {
        yield sealChunk(k, aad, i++, false, buf.subarray(0, this.chunk));
        buf = buf.subarray(this.chunk);
      }
    }
    if (expect && (size !== expect.size || expect.check() !== expect.sha256))
      throw new PloneBackupError('SOURCE_CHANGED', `${key} changed while it was pushed.`, { hint: 'Push again.' });
    yield sealChunk(k, aad, i, true, buf);
  }

  sealBuffer(key: string, body: Buffer): Buffer {
    const parts: Buffer[] = [];
    const { header, k, aad } = this.newObject(key);
    parts.push(header);
    let i = 0;
    let at = 0;
    while (body.length - at > this.chunk) {
      parts.push(sealChunk(k, aad, i++, false, body.subarray(at, at + this.chunk)));
      at += this.chunk;
    }
    parts.push(sealChunk(k, aad, i, true, body.subarray(at)));
    return Buffer.concat(parts);
  }

  /** Decrypts a stream chunk by chunk; every chunk given out is authentic, and the end is checked (REMOTE_BAD otherwise). */
  async *open(key: string, src: AsyncIterable<Uint8Array>, fail: (why: string) => Error): AsyncGenerator<Buffer> {
    let buf: Buffer = Buffer.alloc(0);
    let k: Buffer | undefined;
    let aad: Buffer | undefined;
    let i = 0;
    const frame = this.chunk + TAG;
    for await (const c of src) {
      const b = Buffer.from(c.buffer, c.byteOffset, c.byteLength);
      buf = buf.length ? Buffer.concat([buf, b]) : b;
      if (!k) {
        if (buf.length < HEADER) continue;
        const header = buf.subarray(0, HEADER);
        if (!header.subarray(0, MAGIC.length).equals(MAGIC)) throw fail('it is not an encrypted object');
        if (header.readUInt32BE(MAGIC.length + 16) !== this.chunk) throw fail("its chunk size is not the target's");
        k = this.objectKey(Buffer.from(header.subarray(MAGIC.length, MAGIC.length + 16)));
        aad = Buffer.concat([header, Buffer.from(key, 'utf8')]);
        buf = buf.subarray(HEADER);
      }
      while (buf.length > frame) {
        yield openChunk(k, aad!, i++, false, buf.subarray(0, frame), fail);
        buf = buf.subarray(frame);
      }
    }
    if (!k) throw fail("it is shorter than an encrypted object's header");
    if (buf.length < TAG) throw fail('it is cut off');
    yield openChunk(k, aad!, i, true, buf, fail);
  }

  async openBuffer(key: string, body: Buffer, fail: (why: string) => Error): Promise<Buffer> {
    const out: Buffer[] = [];
    for await (const c of this.open(
      key,
      (async function* () {
        yield body;
      })(),
      fail,
    ))
      out.push(c);
    return Buffer.concat(out);
  }
}

function nonce(i: number, final: boolean): Buffer {
  const n = Buffer.alloc(12);
  n[0] = final ? 1 : 0;
  n.writeBigUInt64BE(BigInt(i), 4);
  return n;
}

function sealChunk(k: Buffer, aad: Buffer, i: number, final: boolean, plain: Buffer): Buffer {
  const c = createCipheriv('aes-256-gcm', k, nonce(i, final));
  c.setAAD(aad);
  const a = c.update(plain);
  const b = c.final();
  return Buffer.concat([a, b, c.getAuthTag()]);
}

function openChunk(k: Buffer, aad: Buffer, i: number, final: boolean, sealed: Buffer, fail: (why: string) => Error): Buffer {
  const d = createDecipheriv('aes-256-gcm', k, nonce(i, final));
  d.setAAD(aad);
  d.setAuthTag(sealed.subarray(sealed.length - TAG));
  const a = d.update(sealed.subarray(0, sealed.length - TAG));
  try {
    return Buffer.concat([a, d.final()]);
  } catch {
    throw fail(final ? 'it does not authenticate (damaged, cut off, or not this object)' : `its chunk ${i + 1} does not authenticate (damaged or moved)`);
  }
}

async function readKeyFile(file: string): Promise<Buffer> {
  let b: Buffer;
  try {
    b = await readFileCapped(file, 64 << 10, { what: 'The key file' });
  } catch (e) {
    throw new PloneBackupError('REMOTE_KEY', `The key file ${file} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}).`, {
      path: file,
      hint: 'Give a readable file of at least 32 random bytes, e.g. made with head -c 32 /dev/urandom > FILE (chmod 600).',
      cause: e,
    });
  }
  // A trailing newline of a key written as text (an editor's, or `openssl rand -base64 32 > FILE`)
  // is no part of the key. A binary key (`head -c 32 /dev/urandom`) is used whole: its last byte is
  // a newline one time in 128, and cutting it would refuse (or change) a key made as told.
  let end = b.length;
  while (end > 0 && (b[end - 1] === 0x0a || b[end - 1] === 0x0d)) end--;
  if (!b.subarray(0, end).every((c) => c >= 0x20 && c <= 0x7e)) end = b.length;
  if (end < 32)
    throw new PloneBackupError('REMOTE_KEY', `The key file ${file} holds ${end} bytes; a key needs at least 32.`, {
      path: file,
      hint: 'Make one with head -c 32 /dev/urandom > FILE (or openssl rand -base64 32 > FILE), chmod 600, and keep a copy away from the backups.',
    });
  return b.subarray(0, end);
}

/** Reads and checks the marker (hostile input: capped, every field checked); undefined when there is none. */
export async function readMarker(t: RemoteTarget, signal?: AbortSignal): Promise<Marker | undefined> {
  const body = await t.get(MARKER_KEY, 4096, signal);
  if (!body) return undefined;
  const fail = (why: string) =>
    new PloneBackupError('REMOTE_BAD', `The encryption marker ${MARKER_KEY} in ${t.url} cannot be used: ${why}.`, {
      path: MARKER_KEY,
      hint: 'It was not written by plone-backup as it is; without it the encrypted objects cannot be read. Restore it from a copy, or push to a new prefix.',
    });
  let m: Record<string, unknown>;
  try {
    m = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
  } catch {
    throw fail('it is not JSON');
  }
  if (typeof m !== 'object' || m === null || m.format !== MARKER_FORMAT || m.version !== 1 || m.cipher !== 'AES-256-GCM') throw fail('it is not a version 1 AES-256-GCM marker');
  if (typeof m.chunk !== 'number' || !Number.isInteger(m.chunk) || m.chunk < MIN_CHUNK || m.chunk > MAX_CHUNK) throw fail('its chunk size is not sane');
  if (typeof m.check !== 'string' || !/^[0-9a-f]{64}$/.test(m.check)) throw fail('it has no key check value');
  const k = m.kdf as Record<string, unknown> | null;
  if (typeof k !== 'object' || k === null || typeof k.salt !== 'string' || !/^[A-Za-z0-9+/]{22,88}={0,2}$/.test(k.salt)) throw fail('its key derivation has no salt');
  if (k.name === 'scrypt') {
    const pow2 = (n: unknown) => typeof n === 'number' && Number.isInteger(n) && n >= 1 << 14 && n <= 1 << 20 && (n & (n - 1)) === 0;
    if (!pow2(k.N) || k.r !== 8 || typeof k.p !== 'number' || !Number.isInteger(k.p) || k.p < 1 || k.p > 4)
      throw fail('its scrypt parameters are outside what plone-backup writes');
  } else if (k.name !== 'keyfile') throw fail('its key derivation is neither scrypt nor a key file');
  return m as unknown as Marker;
}

/**
 * Checks the target against the key: a marker and a key that matches it
 * (then the encrypting view of the target), or neither (the plain target).
 * `create`: a push may make the marker of a target that holds nothing yet.
 */
export async function bindKey(t: RemoteTarget, key: KeySource | undefined, opts: { create?: boolean; signal?: AbortSignal } = {}): Promise<RemoteTarget> {
  let marker = await readMarker(t, opts.signal);
  if (!key) {
    if (marker) throw keyError(`${t.url} is encrypted, and no key was given.`, HOW);
    return t;
  }
  if (!marker) {
    if (!opts.create)
      throw keyError(
        `${t.url} is not encrypted, and a key was given (${key.via}).`,
        'An encrypted and a plain remote never mix: drop the key for this remote (--key-file, remote.keyFile, PLONE_BACKUP_PASSPHRASE), or push encrypted to a prefix of its own.',
      );
    if ((await t.list('', opts.signal, { recursive: true, limit: 1 })).length) {
      throw keyError(
        `${t.url} already holds unencrypted objects; an encrypted push does not mix with them.`,
        'Push encrypted to a new prefix (s3://BUCKET/OTHER), or drop the key.',
      );
    }
    const salt = randomBytes(16).toString('base64');
    const draft: Marker = {
      format: MARKER_FORMAT,
      version: 1,
      cipher: 'AES-256-GCM',
      chunk: CRYPT_CHUNK,
      kdf: key.keyFile !== undefined ? { name: 'keyfile', salt } : { name: 'scrypt', salt, ...DEFAULT_SCRYPT },
      check: '',
    };
    draft.check = (await TargetKeys.derive(key, draft)).check;
    const body = Buffer.from(JSON.stringify(draft, null, 1) + '\n');
    // Two first pushes at once: one marker wins, the other is checked against it below.
    await t.put(MARKER_KEY, body, hashBuffer(body), opts.signal);
    marker = await readMarker(t, opts.signal);
    if (!marker)
      throw new PloneBackupError('REMOTE_FAILED', `The encryption marker written to ${t.url} cannot be read back.`, {
        path: MARKER_KEY,
        hint: 'Check the remote, then push again.',
      });
  }
  const { keys, check } = await TargetKeys.derive(key, marker);
  if (!timingSafeEqual(Buffer.from(check, 'hex'), Buffer.from(marker.check, 'hex'))) {
    throw keyError(`The key (${key.via}) is not the one ${t.url} is encrypted with.`, HOW);
  }
  return new EncryptedTarget(t, keys);
}

/**
 * The encrypting view of a target: the same interface, with logical keys and
 * plaintext bodies and sizes; what reaches the target is sealed, under the
 * physical names. `list` gives the target's names as they are.
 */
export class EncryptedTarget implements RemoteTarget {
  readonly encrypted = true;
  constructor(
    readonly inner: RemoteTarget,
    private readonly keys: TargetKeys,
  ) {}

  get url(): string {
    return this.inner.url;
  }
  get stats() {
    return this.inner.stats;
  }

  physicalKey(key: string): string {
    return this.keys.physical(key);
  }

  private fail(key: string) {
    return (why: string) =>
      new PloneBackupError('REMOTE_BAD', `The remote object ${key} in ${this.url} does not decrypt: ${why}; it was not used.`, {
        path: key,
        hint: 'The copy on the remote is damaged or was replaced: push again from a site that still has that backup, or restore another date.',
      });
  }

  list(prefix: string, signal?: AbortSignal, opts?: { recursive?: boolean; limit?: number }): Promise<string[]> {
    return this.inner.list(prefix, signal, opts);
  }

  /** A blob file as a pack holds it: sealed alone under its blob key (see the header). */
  sealBlob(key: string, plain: Buffer): Buffer {
    return this.keys.sealBuffer(key, plain);
  }

  openBlob(key: string, sealed: Buffer): Promise<Buffer> {
    return this.keys.openBuffer(key, sealed, this.fail(key));
  }

  sealedSize(plain: number): number {
    return this.keys.sealedSize(plain);
  }

  getRange(key: string, start: number, end: number, signal?: AbortSignal): Promise<Buffer | undefined> {
    if (!isPack(key)) throw new Error(`EncryptedTarget.getRange: ${key} is not a pack`);
    return this.inner.getRange(key, start, end, signal);
  }

  async head(key: string, signal?: AbortSignal): Promise<{ size: number } | undefined> {
    if (isPack(key)) return this.inner.head(key, signal);
    const h = await this.inner.head(this.keys.physical(key), signal);
    return h && { size: this.keys.plainSize(h.size) };
  }

  async get(key: string, maxBytes: number, signal?: AbortSignal): Promise<Buffer | undefined> {
    const b = await this.inner.get(this.keys.physical(key), this.keys.sealedSize(maxBytes), signal);
    return b && this.keys.openBuffer(key, b, this.fail(key));
  }

  async stream(key: string, signal?: AbortSignal): Promise<AsyncIterable<Uint8Array>> {
    if (isPack(key)) return this.inner.stream(key, signal);
    return this.keys.open(key, await this.inner.stream(this.keys.physical(key), signal), this.fail(key));
  }

  async put(key: string, body: Buffer, sums: ObjectChecksums, signal?: AbortSignal): Promise<'written' | 'exists'> {
    if (isPack(key)) return this.inner.put(key, body, sums, signal); // its slices are sealed already
    const sealed = this.keys.sealBuffer(key, body);
    return this.inner.put(this.keys.physical(key), sealed, hashBuffer(sealed), signal);
  }

  async upload(key: string, file: string, sums: ObjectChecksums, signal?: AbortSignal): Promise<'written' | 'exists'> {
    const fh = await openNoFollow(file);
    try {
      const sha = createHash('sha256');
      const src = fh.createReadStream({ highWaterMark: 1 << 20, autoClose: false, signal });
      const sealed = this.keys.seal(key, src, { size: sums.size, sha256: sums.sha256, update: (b) => sha.update(b), check: () => sha.digest('hex') });
      return await this.inner.uploadStream(this.keys.physical(key), this.keys.sealedSize(sums.size), sealed, signal);
    } finally {
      await fh.close();
    }
  }

  uploadStream(): Promise<'written' | 'exists'> {
    throw new Error('EncryptedTarget.uploadStream: not a layer to stack');
  }

  delete(keys: string[], signal?: AbortSignal): Promise<void> {
    return this.inner.delete(
      keys.map((k) => this.keys.physical(k)),
      signal,
    );
  }

  close(): void {
    this.inner.close();
  }
}

/** A pack's key (layout.ts): stored as it is, its slices sealed one by one. */
const isPack = (key: string) => /(^|\/)packs\/[0-9a-f]{64}\.pack$/.test(key);

/**
 * How a pack holds blob files on this target: sealed one by one on an
 * encrypted one (see the header), as they are on a plain one.
 */
export interface BlobSealer {
  seal(key: string, plain: Buffer): Buffer;
  open(key: string, stored: Buffer): Promise<Buffer>;
  storedSize(plain: number): number;
}

export function blobSealer(t: RemoteTarget): BlobSealer {
  if (t instanceof EncryptedTarget) return { seal: (k, b) => t.sealBlob(k, b), open: (k, b) => t.openBlob(k, b), storedSize: (n) => t.sealedSize(n) };
  return { seal: (_k, b) => b, open: async (_k, b) => b, storedSize: (n) => n };
}

/** The name a logical key has on the target (blob files are hidden on an encrypted one). */
export function physicalKey(t: RemoteTarget, key: string): string {
  return t instanceof EncryptedTarget ? t.physicalKey(key) : key;
}

/**
 * The key a run uses, by precedence: `--key-file`, then the configuration's
 * `remote.keyFile` or `remote.passphraseEnv` (the name of a variable), then
 * PLONE_BACKUP_PASSPHRASE; undefined: no encryption. The passphrase itself is
 * only ever read from the environment.
 */
export function keySourceFrom(o: { keyFile?: string; configKeyFile?: string; passphraseEnv?: string; env?: NodeJS.ProcessEnv }): KeySource | undefined {
  const env = o.env ?? process.env;
  if (o.keyFile !== undefined) return { keyFile: path.resolve(o.keyFile), via: `--key-file ${o.keyFile}` };
  if (o.configKeyFile !== undefined) return { keyFile: o.configKeyFile, via: `remote.keyFile ${o.configKeyFile}` };
  if (o.passphraseEnv !== undefined) {
    const v = env[o.passphraseEnv];
    if (!v)
      throw keyError(
        `remote.passphraseEnv names ${o.passphraseEnv}, which is not set (or empty).`,
        `Set ${o.passphraseEnv} to the passphrase in the environment of the run (never in plone-backup.json).`,
      );
    return { passphrase: v, via: o.passphraseEnv };
  }
  const v = env.PLONE_BACKUP_PASSPHRASE;
  return v ? { passphrase: v, via: 'PLONE_BACKUP_PASSPHRASE' } : undefined;
}

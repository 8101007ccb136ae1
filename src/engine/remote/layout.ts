/**
 * The remote layout, the same on S3 and in a folder, under the URL's prefix:
 *
 *   <storage>/pieces/<piece name>            a filestorage piece (.fsz, .deltafsz, .fs, .deltafs), once
 *   <storage>/indexes/<stamp>.index          the Data.fs.index of the state after that piece
 *   <storage>/blobs/<oid hex>/<tid hex>.blob a blob file, once per (oid, tid) whatever the layout
 *                                            of the site and however many generations name it
 *   <storage>/packs/<sha256>.pack            many small blob files (each under PACK_BLOB bytes)
 *                                            one after the other, named by the SHA-256 of its bytes
 *   <storage>/generations/<stamp>.json       a generation: the manifest naming all of the above,
 *                                            written LAST and never replaced (If-None-Match: *)
 *
 * Every object but a manifest is immutable and addressed by what it is (a
 * repozo piece name is its stamp; ZODB never changes a committed blob file;
 * a pack is named by its SHA-256),
 * so pushing one twice, or from two pushes at once, writes the same bytes.
 * A reader lists `generations/` only: a manifest is there only once every
 * object it names was written, so it never sees half a generation.
 *
 * A manifest (`RemoteManifest`) holds the whole filestorage chain up to its
 * stamp (each piece's .dat line, size and SHA-256: the .dat itself is never
 * uploaded, it is written back from these lines), the index, and the blob
 * files: all of them for a full backup's generation, or, for an incremental
 * one, its `parent` (an older generation of the same chain) and only the files
 * added since, as the local blob pool does; a generation's files are its own
 * and its parents' (`count` checks the sum).
 *
 * Packs (version 2 of the manifest): a blob file under PACK_BLOB bytes is not
 * an object of its own but a slice of a pack (as restic packs its blobs): a
 * request per 1 KB file made the first push of a site of 20,000 small blob
 * files 20,000 PUTs, and its restore 20,000 GETs. Its entry then says where:
 * `[oid, tid, size, sha256, pack, offset]` (the slice is `size` bytes at
 * `offset`; on an encrypted remote the file is sealed on its own, crypt.ts's
 * sealedSize(size) bytes, so a ranged GET of it decrypts alone). Bigger
 * files stay objects of their own (`[oid, tid, size, sha256]`, as in
 * version 1, which is still read). A pack is written before any manifest
 * names it, holds only blob files its generation's push added, and goes only
 * when no remaining manifest names a file in it (forget.ts).
 *
 * Snapshots and zip backups (deploy/kinds.ts) have the same layout in a
 * space of their own, `<storage>/snapshot/` and `<storage>/zip/` (a storage
 * name never holds a `/`, so no storage's space is another's): pieces,
 * indexes, blob files, generations, and `archives/<stamp>.tar[.gz]`, a blob
 * generation kept as one archive (zip backups, the `tar` and `tar.gz` blob
 * formats), pushed as it is and named by the manifest's `archive`; an
 * incremental_blobs chain (the `incremental` and `incremental.gz` formats) as
 * its archives, each once, `archives/<stamp>.tar[.gz]` and
 * `archives/<stamp>.delta.tar[.gz]`, named in order by the manifest's
 * `archives` (the chain's full archive, then its deltas up to the
 * generation's own; the `.snar` stays local: tar changes it with every delta,
 * and a restore reads only the archives). Every
 * function here taking a `storage` takes such a space (`spaceOf`).
 *
 * What a remote holds is hostile input: a manifest is read capped, checked
 * whole (stamps, names that parse as repozo pieces, hex ids, sizes, digests,
 * parents strictly older, the totals), and turned into local paths only
 * through blobRelPath of checked ids, so `../x` never reaches a folder.
 */

import { PloneBackupError } from '../base/errors';
import { READ_CAPS } from '../base/io';
import { parseDataFileName } from '../repozo/repository';
import { isStamp } from '../zodb/tid';
import type { BlobLayout } from '../zodb/blobdir';
import type { Kind } from '../deploy/kinds';
import type { RemoteTarget } from './target';

export const MANIFEST_FORMAT = 'plone-backup-remote-generation';
/** The manifest version a push writes (2: blob files in packs); 1 is still read. */
export const MANIFEST_VERSION = 2;
/** Blob files under this size go into packs; packs are cut once they hold PACK_TARGET bytes. */
export const PACK_BLOB = 1 << 20;
export const PACK_TARGET = 16 << 20;
/** At most this many pieces in a chain, files in a manifest, and generations followed through parents. */
export const REMOTE_CAPS = { pieces: 100_000, files: 20_000_000, depth: 100_000 } as const;

export interface RemotePiece {
  name: string;
  start: number;
  end: number;
  /** The .dat's md5 (of the uncompressed bytes). */
  md5: string;
  /** The object's size and SHA-256 (of the bytes stored: compressed for .fsz). */
  size: number;
  sha256: string;
}

/** [oid hex, tid hex, size, sha256 hex]: an object of its own; with [pack sha256 hex, offset]: a slice of a pack. */
export type RemoteBlob = [string, string, number, string] | [string, string, number, string, string, number];

export interface RemoteManifest {
  format: typeof MANIFEST_FORMAT;
  version: 1 | 2;
  storage: string;
  stamp: string;
  /** The chain's full piece's stamp. */
  full: string;
  pieces: RemotePiece[];
  index?: { size: number; sha256: string };
  /** What the last transaction was (from the piece cache), for listings. */
  info?: { transactions?: number; lastTid?: string; lastTime?: string; lastUser?: string; lastDescription?: string };
  /** A blob generation kept as one archive (`<stamp>.tar` or `<stamp>.tar.gz`, under `archives/`), instead of `blobs`. */
  archive?: { name: string; size: number; sha256: string };
  /** An incremental_blobs chain, instead of `blobs`: its full archive, then its deltas, the last this generation's (under `archives/`). */
  archives?: { name: string; size: number; sha256: string }[];
  blobs?: {
    layout: BlobLayout;
    /** An older generation of the same chain whose files this one adds to. */
    parent?: string;
    /** Files and bytes with the parents'. */
    count: number;
    bytes: number;
    files: RemoteBlob[];
  };
}

/** Where a kind of backups of a storage lives on the remote (see the header). */
export const spaceOf = (storage: string, kind: Kind) => (kind === 'backup' ? storage : `${storage}/${kind}`);
export const storagePrefix = (storage: string) => `${storage}/`;
export const archiveKey = (storage: string, name: string) => `${storage}/archives/${name}`;
/** The name of an archived blob generation on the remote: its stamp and its suffix. */
export const ARCHIVE_NAME = /^\d{4}(-\d\d){5}(\.delta)?\.tar(\.gz)?$/;
export const generationsPrefix = (storage: string) => `${storage}/generations/`;
export const manifestKey = (storage: string, stamp: string) => `${storage}/generations/${stamp}.json`;
export const pieceKey = (storage: string, name: string) => `${storage}/pieces/${name}`;
export const indexKey = (storage: string, stamp: string) => `${storage}/indexes/${stamp}.index`;
export const blobKey = (storage: string, oid: string, tid: string) => `${storage}/blobs/${oid}/${tid}.blob`;
export const packKey = (storage: string, id: string) => `${storage}/packs/${id}.pack`;
/** The key of the object holding a blob file: its pack, or its own. */
export const blobObjectKey = (storage: string, e: RemoteBlob) => (e.length === 6 ? packKey(storage, e[4]) : blobKey(storage, e[0], e[1]));

const HEX16 = /^[0-9a-f]{16}$/;
const HEX32 = /^[0-9a-f]{32}$/;
const HEX64 = /^[0-9a-f]{64}$/;
const STORAGE = /^[A-Za-z0-9_.-]{1,100}$/;

export function isStorageName(s: string): boolean {
  return STORAGE.test(s) && s !== '.' && s !== '..';
}

/** The stamps of the generations on the remote for a storage, oldest first (names that are not `<stamp>.json` are ignored). */
export async function remoteStamps(t: RemoteTarget, storage: string, signal?: AbortSignal): Promise<string[]> {
  const names = await t.list(generationsPrefix(storage), signal);
  return names
    .filter((n) => n.endsWith('.json') && isStamp(n.slice(0, -5)))
    .map((n) => n.slice(0, -5))
    .sort();
}

function bad(t: RemoteTarget, key: string, why: string): PloneBackupError {
  return new PloneBackupError('REMOTE_BAD', `The remote generation ${key} in ${t.url} cannot be trusted: ${why}; it is not used.`, {
    path: key,
    hint: 'It was not written by plone-backup as it is: remove it from the remote (the other generations stay usable), then push again.',
  });
}

const count = (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** Reads and checks a manifest (see the header); undefined when there is none. */
export async function readRemoteManifest(t: RemoteTarget, storage: string, stamp: string, signal?: AbortSignal): Promise<RemoteManifest | undefined> {
  const key = manifestKey(storage, stamp);
  const body = await t.get(key, READ_CAPS.manifest, signal);
  if (!body) return undefined;
  let m: unknown;
  try {
    m = JSON.parse(body.toString('utf8'));
  } catch {
    throw bad(t, key, 'it is not JSON');
  }
  checkRemoteManifest(m, (why) => bad(t, key, why), storage, stamp);
  return m;
}

/** Checks a parsed manifest whole; `fail` makes the error. */
export function checkRemoteManifest(m: unknown, fail: (why: string) => Error, storage: string, stamp: string): asserts m is RemoteManifest {
  if (typeof m !== 'object' || m === null || Array.isArray(m)) throw fail('it is not a JSON object');
  const o = m as Record<string, unknown>;
  if (o.format !== MANIFEST_FORMAT || (o.version !== 1 && o.version !== 2)) throw fail('it is not a version 1 or 2 plone-backup generation');
  if (o.storage !== storage) throw fail(`it names the storage ${JSON.stringify(o.storage)}, not ${storage}`);
  if (o.stamp !== stamp) throw fail("its stamp is not its name's");
  if (typeof o.full !== 'string' || !isStamp(o.full) || o.full > stamp) throw fail('its full stamp is not a stamp at or before its own');
  if (!Array.isArray(o.pieces) || o.pieces.length === 0 || o.pieces.length > REMOTE_CAPS.pieces) throw fail('its pieces are not a list');
  const pieces = o.pieces as unknown[];
  let end = 0;
  pieces.forEach((p: unknown, i: number) => {
    if (typeof p !== 'object' || p === null) throw fail(`piece ${i + 1} is not an object`);
    const q = p as Record<string, unknown>;
    const f = typeof q.name === 'string' ? parseDataFileName(q.name) : undefined;
    if (!f) throw fail(`piece ${i + 1} is not named as a repozo piece`);
    if (f.full !== (i === 0)) throw fail(`piece ${i + 1} (${f.name}) is ${f.full ? 'a full backup inside' : 'an incremental at the start of'} the chain`);
    if (i === 0 && f.stamp !== o.full) throw fail('its first piece is not its full backup');
    if (i === pieces.length - 1 && f.stamp !== stamp) throw fail('its last piece is not its own stamp');
    if (i > 0 && f.stamp <= (pieces[i - 1] as RemotePiece).name.slice(0, 19)) throw fail('its pieces are not in order');
    if (!count(q.start) || !count(q.end) || !count(q.size) || (q.end as number) < (q.start as number)) throw fail(`piece ${f.name} has no sane range or size`);
    if (q.start !== end) throw fail(`piece ${f.name} does not start where the one before ends`);
    end = q.end as number;
    if (typeof q.md5 !== 'string' || !HEX32.test(q.md5)) throw fail(`piece ${f.name} has no md5`);
    if (typeof q.sha256 !== 'string' || !HEX64.test(q.sha256)) throw fail(`piece ${f.name} has no SHA-256`);
  });
  if (o.archive !== undefined) {
    const a = o.archive as Record<string, unknown> | null;
    if (
      typeof a !== 'object' ||
      a === null ||
      typeof a.name !== 'string' ||
      !ARCHIVE_NAME.test(a.name) ||
      !a.name.startsWith(stamp) ||
      !count(a.size) ||
      typeof a.sha256 !== 'string' ||
      !HEX64.test(a.sha256)
    )
      throw fail('its archive is not a name, a size and a SHA-256');
    if (o.blobs !== undefined) throw fail('it has both an archive and blob files');
    if (a.name.includes('.delta')) throw fail('its archive is a delta without its chain');
  }
  if (o.archives !== undefined) checkArchives(o, fail, stamp);
  if (o.index !== undefined) {
    const x = o.index as Record<string, unknown> | null;
    if (typeof x !== 'object' || x === null || !count(x.size) || typeof x.sha256 !== 'string' || !HEX64.test(x.sha256)) throw fail('its index is not a size and a SHA-256');
  }
  if (o.info !== undefined && (typeof o.info !== 'object' || o.info === null || Array.isArray(o.info))) throw fail('its info is not an object');
  if (o.info !== undefined) {
    const info = o.info as Record<string, unknown>;
    for (const k of ['lastTime', 'lastUser', 'lastDescription'])
      if (info[k] !== undefined && (typeof info[k] !== 'string' || (info[k] as string).length > 4096)) throw fail(`its info.${k} is not a short string`);
    if (info.lastTid !== undefined && (typeof info.lastTid !== 'string' || !HEX16.test(info.lastTid))) throw fail('its info.lastTid is not a tid');
    if (info.transactions !== undefined && !count(info.transactions)) throw fail('its info.transactions is not a count');
  }
  if (o.blobs !== undefined) {
    const b = o.blobs as Record<string, unknown> | null;
    if (typeof b !== 'object' || b === null) throw fail('its blobs are not an object');
    if (b.layout !== 'bushy' && b.layout !== 'lawn') throw fail('its blob layout is neither bushy nor lawn');
    if (b.parent !== undefined && (typeof b.parent !== 'string' || !isStamp(b.parent) || b.parent >= stamp || b.parent < (o.full as string)))
      throw fail('its parent is not an older generation of its chain');
    if (!count(b.count) || !count(b.bytes)) throw fail('its blob totals are not counts');
    if (!Array.isArray(b.files) || b.files.length > REMOTE_CAPS.files) throw fail('its blob files are not a list');
    for (const e of b.files as unknown[]) {
      if (
        !Array.isArray(e) ||
        (e.length !== 4 && !(e.length === 6 && o.version === 2 && typeof e[4] === 'string' && HEX64.test(e[4]) && count(e[5]))) ||
        typeof e[0] !== 'string' ||
        !HEX16.test(e[0]) ||
        typeof e[1] !== 'string' ||
        !HEX16.test(e[1]) ||
        !count(e[2]) ||
        typeof e[3] !== 'string' ||
        !HEX64.test(e[3])
      ) {
        throw fail(`a blob entry is not [oid, tid, size, sha256] or [oid, tid, size, sha256, pack, offset]: ${JSON.stringify(e).slice(0, 80)}`);
      }
    }
  }
}

/** A manifest's incremental_blobs chain: archives alone, the full one first, then deltas in order up to its own stamp. */
function checkArchives(o: Record<string, unknown>, fail: (why: string) => Error, stamp: string): void {
  const l = o.archives as unknown;
  if (!Array.isArray(l) || l.length === 0 || l.length > REMOTE_CAPS.pieces || o.archive !== undefined || o.blobs !== undefined)
    throw fail('its archives are not a chain of archives alone');
  let prev = '';
  l.forEach((x: unknown, i: number) => {
    const a = x as Record<string, unknown> | null;
    if (typeof a !== 'object' || a === null || typeof a.name !== 'string' || !ARCHIVE_NAME.test(a.name) || !count(a.size) || typeof a.sha256 !== 'string' || !HEX64.test(a.sha256))
      throw fail(`its archive ${i + 1} is not a name, a size and a SHA-256`);
    const stampOf = a.name.slice(0, 19);
    if (a.name.includes('.delta') !== i > 0) throw fail(`its archive ${i + 1} (${a.name}) is ${i > 0 ? 'a full archive inside' : 'a delta at the start of'} its chain`);
    if (stampOf <= prev || stampOf > stamp || (i === l.length - 1 && stampOf !== stamp)) throw fail('its archives are not in order, up to its own stamp');
    prev = stampOf;
  });
}

/** `oid.tid`: a blob file's identity, whatever the layout. */
export const blobId = (oid: string, tid: string) => `${oid}.${tid}`;

/**
 * Reads manifests and resolves a generation's blob files with its parents',
 * each manifest read once per resolver (a listing or a push reads a chain
 * once, not once per generation).
 */
export class RemoteResolver {
  private readonly manifests = new Map<string, RemoteManifest | null>();
  private readonly resolved = new Map<string, Map<string, RemoteBlob>>();
  constructor(
    private readonly t: RemoteTarget,
    private readonly storage: string,
    private readonly signal?: AbortSignal,
  ) {}

  async manifest(stamp: string): Promise<RemoteManifest | undefined> {
    if (!this.manifests.has(stamp)) this.manifests.set(stamp, (await readRemoteManifest(this.t, this.storage, stamp, this.signal)) ?? null);
    return this.manifests.get(stamp) ?? undefined;
  }

  /** Every blob file of the generation (id → entry), its parents' included; REMOTE_BAD when a parent is missing or the totals differ. */
  async blobs(stamp: string): Promise<Map<string, RemoteBlob>> {
    const done = this.resolved.get(stamp);
    if (done) return done;
    const chain: RemoteManifest[] = [];
    let at: string | undefined = stamp;
    let base: Map<string, RemoteBlob> | undefined;
    while (at !== undefined) {
      if (chain.length > REMOTE_CAPS.depth) throw bad(this.t, manifestKey(this.storage, stamp), 'its parents do not end');
      const known = this.resolved.get(at);
      if (known) {
        base = known;
        break;
      }
      const m = await this.manifest(at);
      if (!m) throw bad(this.t, manifestKey(this.storage, chain.at(-1)?.stamp ?? stamp), `its parent generation ${at} is not on the remote`);
      if (chain.length && m.full !== chain.at(-1)!.full) throw bad(this.t, manifestKey(this.storage, chain.at(-1)!.stamp), 'its parent is of another chain');
      chain.push(m);
      at = m.blobs?.parent;
    }
    let files = new Map(base ?? []);
    let bytes = 0;
    for (const e of files.values()) bytes += e[2];
    let layout = chain.at(-1)?.blobs?.layout;
    for (let i = chain.length - 1; i >= 0; i--) {
      const m = chain[i]!;
      if (!m.blobs) {
        files = new Map();
        bytes = 0;
        continue;
      }
      if (layout !== undefined && m.blobs.layout !== layout && m.blobs.parent !== undefined)
        throw bad(this.t, manifestKey(this.storage, m.stamp), "its layout is not its parent's");
      layout = m.blobs.layout;
      for (const e of m.blobs.files) {
        const id = blobId(e[0], e[1]);
        bytes += e[2] - (files.get(id)?.[2] ?? 0);
        files.set(id, e);
      }
      if (files.size !== m.blobs.count || bytes !== m.blobs.bytes)
        throw bad(
          this.t,
          manifestKey(this.storage, m.stamp),
          `it counts ${m.blobs.count} files and ${m.blobs.bytes} bytes, but with its parents it names ${files.size} and ${bytes}`,
        );
      this.resolved.set(m.stamp, files);
      files = new Map(files);
    }
    return this.resolved.get(stamp) ?? new Map();
  }
}

/**
 * What the remote tests share: a real S3 server (Ceph RGW, started by
 * test/support/s3.ts for the test file that calls useS3, destroyed after
 * it), fresh buckets, a production site with backups at chosen stamps,
 * and a restore from a remote.
 */
import { after, before } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import {
  type Deployment,
  type KeySource,
  type RemoteTarget,
  RemoteResolver,
  backupDeployment,
  blobId,
  blobKey,
  blobSealer,
  discoverDeployment,
  openRemoteRestore,
  openTarget,
  packKey,
  parseStamp,
  physicalKey,
  remoteStamps,
} from '../../src/engine/internal';
import { fakeClock } from '../support/fixtures';
import { blobContents, content, md5File } from '../support/fs';
import { startS3, type S3Instance } from '../support/s3';
import { makeSite, type Site } from '../support/site';

export interface S3Server {
  env: Record<string, string>;
  admin: S3Client;
  /** A fresh bucket, and its URL with a prefix. */
  bucket(): Promise<string>;
  /** The target of a URL on this server (with a key: its encrypted view; `create`: a push may make it encrypted). */
  open(url: string, o?: { multipartThreshold?: number; key?: KeySource; create?: boolean }): Promise<RemoteTarget>;
  /** Every key in the bucket of `url`, as stored. */
  rawKeys(url: string): Promise<string[]>;
  rawGet(url: string, key: string): Promise<Buffer>;
  rawPut(url: string, key: string, body: Buffer): Promise<void>;
  /** Where a blob file's stored bytes are on the server: its pack (or its own object), as stored, at `start` for `length` bytes. */
  blobAt(url: string, t: RemoteTarget, space: string, oid: string, tid: string): Promise<{ key: string; start: number; length: number }>;
  /** Overwrites a blob file's stored bytes in place (in its pack, or its own object) with `fill`: the object keeps its size and name. */
  damageBlob(url: string, t: RemoteTarget, space: string, oid: string, tid: string, fill?: number): Promise<void>;
}

/**
 * Starts a server for this test file (test/support/s3.ts's startS3, the one
 * way the tests start one), and sets the SDK's default chain from it.
 */
export function useS3(): S3Server {
  let instance: S3Instance | undefined;
  const server = { env: {} as Record<string, string> } as S3Server;
  before(async () => {
    instance = await startS3();
    const e = instance.env;
    server.env = { S3_ENDPOINT: e.endpoint, S3_ACCESS_KEY: e.accessKey, S3_SECRET_KEY: e.secretKey, S3_REGION: e.region };
    // The SDK's default chain: what a cron line's environment would hold.
    process.env.AWS_ACCESS_KEY_ID = e.accessKey;
    process.env.AWS_SECRET_ACCESS_KEY = e.secretKey;
    process.env.AWS_REGION = e.region;
    server.admin = instance.admin;
  });
  after(() => instance?.destroy());
  const bucketOf = (url: string) => url.slice(5).split('/')[0]!;
  server.bucket = () => instance!.bucket();
  server.open = (url, o = {}) => openTarget(url, { endpoint: server.env.S3_ENDPOINT, ...o });
  server.rawKeys = async (url) => {
    const out: string[] = [];
    let token: string | undefined;
    do {
      const r = await server.admin.send(new ListObjectsV2Command({ Bucket: bucketOf(url), ContinuationToken: token }));
      for (const o of r.Contents ?? []) out.push(o.Key!);
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
    return out.sort();
  };
  server.rawGet = async (url, key) => Buffer.from(await (await server.admin.send(new GetObjectCommand({ Bucket: bucketOf(url), Key: key }))).Body!.transformToByteArray());
  server.rawPut = async (url, key, body) => void (await server.admin.send(new PutObjectCommand({ Bucket: bucketOf(url), Key: key, Body: body })));
  server.blobAt = async (url, t, space, oid, tid) => {
    const prefix = url.slice(5).split('/').slice(1).join('/');
    const r = new RemoteResolver(t, space);
    for (const stamp of (await remoteStamps(t, space)).reverse()) {
      const e = (await r.blobs(stamp)).get(blobId(oid, tid));
      if (!e) continue;
      const length = blobSealer(t).storedSize(e[2]);
      if (e.length === 6) return { key: `${prefix}/${packKey(space, e[4])}`, start: e[5], length };
      return { key: `${prefix}/${physicalKey(t, blobKey(space, oid, tid))}`, start: 0, length };
    }
    throw new Error(`no generation on ${url} names ${oid}/${tid}`);
  };
  server.damageBlob = async (url, t, space, oid, tid, fill = 7) => {
    const at = await server.blobAt(url, t, space, oid, tid);
    const body = await server.rawGet(url, at.key);
    body.fill(fill, at.start, at.start + at.length);
    await server.rawPut(url, at.key, body);
  };
  return server;
}

export interface Point {
  stamp: string;
  md5: string;
  blobs: Record<string, string>;
}

/** A clock giving these stamps, one per call. */
export function stampClock(stamps: string[]): { now: () => Date } {
  let i = 0;
  return { now: () => parseStamp(stamps[Math.min(i++, stamps.length - 1)]!) };
}

/** A site with a full backup and two incrementals, an hour apart. */
export async function production(
  t: { after: (fn: () => unknown) => void },
  root: string,
): Promise<{ s: Site; dep: Deployment; points: Point[]; clock: ReturnType<typeof fakeClock> }> {
  const s = await makeSite(t, root, { docs: 2, files: 3 });
  const dep = await discoverDeployment(root);
  const clock = fakeClock('2026-06-01-10-00-00', 3600);
  const points: Point[] = [];
  for (const [i, kind] of (['fullbackup', 'backup', 'backup'] as const).entries()) {
    await s.site.addDocument(`doc ${i}`);
    await s.site.uploadFile(`f-${i}.pdf`, content(`point ${i}`, 3000 + i));
    points.push(await backupPoint(s, dep, kind, clock));
  }
  return { s, dep, points, clock };
}

export async function backupPoint(s: Site, dep: Deployment, kind: 'fullbackup' | 'backup', clock: { now: () => Date }): Promise<Point> {
  const [r] = await backupDeployment(dep, kind, { now: clock.now });
  assert.ok(r!.filestorage.stamp, 'the backup wrote a piece');
  return { stamp: r!.filestorage.stamp!, md5: md5File(s.file), blobs: blobContents(s.blobDir) };
}

/** The blob files of a tree without `.layout` and tmp. */
export function blobsOf(dir: string): Record<string, string> {
  return filterBlobs(blobContents(dir));
}

export function filterBlobs(b: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(b).filter(([k]) => k.endsWith('.blob')));
}

/** The oid and tid (hex) of a blob path of a bushy tree. */
export function blobIds(rel: string): { oid: string; tid: string } {
  const parts = rel.split('/');
  return {
    oid: parts
      .slice(0, 8)
      .map((p) => p.slice(2))
      .join(''),
    tid: parts[8]!.slice(2, 18),
  };
}

/** A folder holding nothing yet, as a deployment of one storage given by its paths. */
export async function emptySite(root: string): Promise<Deployment> {
  fs.mkdirSync(root, { recursive: true });
  return discoverDeployment(root, { file: path.join(root, 'var', 'filestorage', 'Data.fs'), blobDir: path.join(root, 'var', 'blobstorage') });
}

export async function restoreFrom(dep: Deployment, t: RemoteTarget, date?: string) {
  const { session, fetched } = await openRemoteRestore(dep, t, { date, keepOld: false });
  try {
    return { results: await session.run(), fetched, plans: session.plans };
  } finally {
    await session.close();
  }
}

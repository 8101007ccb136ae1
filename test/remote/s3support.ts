/**
 * What the remote tests share: a real S3 server (Ceph RGW, started by
 * ../shared/s3/start-s3.sh for the test file that calls useS3, destroyed
 * after it), fresh buckets, a production site with backups at chosen stamps,
 * and a restore from a remote.
 */
import { after, before } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { type Deployment, type KeySource, type RemoteTarget, backupDeployment, discoverDeployment, openRemoteRestore, openTarget, parseStamp } from '../../src/engine/internal';
import { fakeClock } from '../support/fixtures';
import { blobContents, content, md5File } from '../support/fs';
import { ROOT } from '../support/paths';
import { makeSite, type Site } from '../support/site';

const SCRIPT = process.env.START_S3 || path.resolve(ROOT, '..', 'shared', 's3', 'start-s3.sh');

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
}

/** Whether nothing listens on 127.0.0.1:port. */
function portFree(port: number): Promise<boolean> {
  return new Promise((res) => {
    const srv = net.createServer();
    srv.once('error', () => res(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => res(true)));
  });
}

/**
 * Starts a server for this test file: an S3 port and its monitor port (the
 * next) that are free, away from the example's range, tried from a place of
 * this process's own, so that test files running side by side do not meet.
 */
export function useS3(): S3Server {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pb-s3-'));
  let bucketNo = 0;
  const server = { env: {} as Record<string, string> } as S3Server;
  before(async () => {
    let port = 0;
    for (let i = 0; i < 150 && !port; i++) {
      const p = 7700 + ((process.pid + i * 7) % 150) * 2;
      if ((await portFree(p)) && (await portFree(p + 1))) port = p;
    }
    assert.ok(port, 'no free port pair for the S3 server');
    const out = execFileSync('bash', [SCRIPT, 'start', '--port', String(port), '--data', dataDir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 300_000 });
    const env = Object.fromEntries(
      out
        .trim()
        .split('\n')
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1).replace(/^"|"$/g, '')]),
    );
    server.env = env;
    // The SDK's default chain: what a cron line's environment would hold.
    process.env.AWS_ACCESS_KEY_ID = env.S3_ACCESS_KEY;
    process.env.AWS_SECRET_ACCESS_KEY = env.S3_SECRET_KEY;
    process.env.AWS_REGION = env.S3_REGION;
    server.admin = new S3Client({
      endpoint: env.S3_ENDPOINT,
      region: env.S3_REGION,
      forcePathStyle: true,
      credentials: { accessKeyId: env.S3_ACCESS_KEY!, secretAccessKey: env.S3_SECRET_KEY! },
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  });
  after(() => {
    server.admin?.destroy();
    execFileSync('bash', [SCRIPT, 'destroy', '--data', dataDir], { stdio: 'inherit', timeout: 120_000 });
  });
  const bucketOf = (url: string) => url.slice(5).split('/')[0]!;
  server.bucket = async () => {
    const name = `pb-test-${process.pid}-${++bucketNo}`;
    await server.admin.send(new CreateBucketCommand({ Bucket: name }));
    return `s3://${name}/sites/prod`;
  };
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

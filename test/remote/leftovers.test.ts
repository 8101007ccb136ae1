/**
 * What interrupted pushes leave on an S3 server, and what a run must not do
 * before it may, against a real server (Ceph RGW):
 * - forget ends the multipart uploads no push will continue (of an object
 *   that is there already; older than the cutoff), under its lock, and
 *   leaves a young one (the next push continues it) and what is not ours;
 *   `--dry-run` only counts them;
 * - a restore from the remote refuses a running site before it fetches
 *   anything (the restore's own "site running" check, made first);
 * - a listing with a limit (the extension's, which shows 50) reads only the
 *   newest manifests of each space and counts the rest;
 * - temporary credentials: a session token given to the engine (the
 *   extension's stored one), or AWS_SESSION_TOKEN in the environment (the
 *   CLI's default chain), is on every request. RGW without STS accepts any
 *   token, so the requests are read on the real client by a middleware.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CreateMultipartUploadCommand, ListMultipartUploadsCommand, UploadPartCommand } from '@aws-sdk/client-s3';
import { S3Target, forgetRemote, listRemote, openRemoteRestore, openTarget, pushDeployment, remoteCacheDir, type RemoteTarget } from '../../src/engine/internal';
import { tmpDir } from '../support/fs';
import { holdSiteLock } from '../support/processes';
import { backupPoint, emptySite, production, restoreFrom, useS3 } from './s3support';

const server = useS3();
const PART = 5 << 20;

/** The open uploads of a bucket: key → how many. */
async function openUploads(url: string): Promise<Record<string, number>> {
  const r = await server.admin.send(new ListMultipartUploadsCommand({ Bucket: url.slice(5).split('/')[0]! }));
  const out: Record<string, number> = {};
  for (const u of r.Uploads ?? []) out[u.Key!] = (out[u.Key!] ?? 0) + 1;
  return out;
}

/** The headers of every request the target's real client sends, as signed. */
function recordHeaders(t: RemoteTarget): Record<string, string>[] {
  const seen: Record<string, string>[] = [];
  (t as S3Target).client.middlewareStack.add(
    (next) => async (args) => {
      seen.push({ ...(args.request as { headers: Record<string, string> }).headers });
      return next(args);
    },
    { step: 'deserialize', name: 'testHeaderRecorder' },
  );
  return seen;
}

describe('forget ends the uploads no push will continue (real S3 server)', () => {
  it('of an object that is there, and older than the cutoff; not a young one, nor what is not ours; --dry-run only counts', async (t) => {
    const root = tmpDir(t);
    const { s, dep, clock } = await production(t, path.join(root, 'prod'));
    const url = await server.bucket();
    const bucket = url.slice(5).split('/')[0]!;
    const prefix = url.slice(5 + bucket.length + 1);
    const first = await server.open(url, { multipartThreshold: PART });
    await pushDeployment(dep, first);
    first.close();

    // A push cancelled while it sends a big blob file in parts: its upload stays, for the next push to continue.
    await s.site.uploadFile('big.pdf', randomBytes(3 * PART + 1234));
    await backupPoint(s, dep, 'backup', clock);
    await s.site.close();
    const ac = new AbortController();
    const cancelled = (await server.open(url, { multipartThreshold: PART })) as S3Target;
    cancelled.client.middlewareStack.add(
      (next, context) => async (args) => {
        const r = await next(args);
        if (context.commandName === 'UploadPartCommand') ac.abort();
        return r;
      },
      { step: 'initialize', name: 'testCancelAfterPart' },
    );
    await assert.rejects(pushDeployment(dep, cancelled, { signal: ac.signal }), (e: Error & { code?: string }) => e.code === 'ABORTED');
    cancelled.close();
    const young = Object.keys(await openUploads(url));
    assert.equal(young.length, 1, 'the cancelled push left its upload');
    assert.match(young[0]!, /\/main\/blobs\/[0-9a-f]{16}\/[0-9a-f]{16}\.blob$/);

    // A dead push's upload of an object that is there (a piece of a pushed generation), and one that is not ours.
    const piece = (await server.rawKeys(url)).find((k) => k.includes('/main/pieces/'))!;
    const foreign = `${prefix}/notes/readme.txt`;
    for (const key of [piece, foreign]) {
      const u = await server.admin.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
      await server.admin.send(new UploadPartCommand({ Bucket: bucket, Key: key, UploadId: u.UploadId, PartNumber: 1, Body: randomBytes(1000) }));
    }
    assert.deepEqual(Object.keys(await openUploads(url)).sort(), [young[0]!, piece, foreign].sort());

    const forget = async (o: { dryRun?: boolean; uploadsOlderThanMs?: number }) => {
      const target = await server.open(url);
      try {
        return await forgetRemote(dep, target, { keep: 0 }, o);
      } finally {
        target.close();
      }
    };
    // --dry-run: counted, nothing aborted.
    const dry = await forget({ dryRun: true });
    assert.deepEqual(dry.unfinished, [piece.slice(prefix.length + 1)]);
    assert.equal(Object.keys(await openUploads(url)).length, 3);
    // The default cutoff (24 hours): only the upload of the object that is there.
    const res = await forget({});
    assert.deepEqual(res.unfinished, [piece.slice(prefix.length + 1)]);
    assert.deepEqual(Object.keys(await openUploads(url)).sort(), [young[0]!, foreign].sort());
    // A cutoff of nothing: the young one too (no push runs while forget holds its lock), never the foreign one.
    const all = await forget({ uploadsOlderThanMs: 0 });
    assert.deepEqual(all.unfinished, [young[0]!.slice(prefix.length + 1)]);
    assert.deepEqual(Object.keys(await openUploads(url)), [foreign]);

    // The next push sends the big file whole, and the remote restores.
    const again = await server.open(url, { multipartThreshold: PART });
    t.after(() => again.close());
    const pushed = await pushDeployment(dep, again);
    assert.equal(pushed.stats.resumed, 0);
    const dev = await emptySite(path.join(root, 'dev'));
    await restoreFrom(dev, again);
  });
});

describe('a restore from the remote refuses a running site before it fetches anything (real S3 server)', () => {
  it('SITE_RUNNING, not a byte downloaded, nothing of the newest generation in the cache; with --force, fetched and restored', async (t) => {
    const root = tmpDir(t);
    const { s, dep, points } = await production(t, path.join(root, 'prod'));
    await s.site.close();
    const url = await server.bucket();
    const push = await server.open(url);
    await pushDeployment(dep, push);
    push.close();
    // A dev site holding the oldest state, then running.
    const dev = await emptySite(path.join(root, 'dev'));
    const oldest = await server.open(url);
    await restoreFrom(dev, oldest, points[0]!.stamp);
    oldest.close();
    const held = await holdSiteLock(t, dev.storages[0]!.file);
    const target = await server.open(url);
    await assert.rejects(openRemoteRestore(dev, target, { keepOld: false }), (e: Error & { code?: string }) => e.code === 'SITE_RUNNING');
    assert.equal(target.stats.downloaded, 0, 'bytes were fetched for a site that runs');
    const cache = path.join(remoteCacheDir(dev.storages[0]!, url), 'backups');
    const newest = points[2]!.stamp;
    assert.ok(!fs.readdirSync(cache).some((n) => n.startsWith(newest)), `the newest piece was fetched: ${fs.readdirSync(cache).join(', ')}`);
    target.close();
    // --force (the user says it is not running): fetched and restored, incrementally.
    const again = await server.open(url);
    t.after(() => again.close());
    const { session } = await openRemoteRestore(dev, again, { keepOld: false, force: true });
    try {
      const [r] = await session.run();
      assert.equal(r!.stamp, newest);
      assert.equal(r!.mode, 'incremental');
    } finally {
      await session.close();
    }
    assert.ok(again.stats.downloaded > 0);
    held.kill('SIGKILL');
  });
});

describe('temporary credentials: the session token is on every request (real S3 server)', () => {
  it('given to the engine (the extension stores one), and from AWS_SESSION_TOKEN (the default chain the CLI uses)', async (t) => {
    const root = tmpDir(t);
    const { s, dep } = await production(t, path.join(root, 'prod'));
    await s.site.close();
    const url = await server.bucket();
    const given = await openTarget(url, {
      endpoint: server.env.S3_ENDPOINT,
      credentials: { accessKeyId: server.env.S3_ACCESS_KEY!, secretAccessKey: server.env.S3_SECRET_KEY!, sessionToken: 'session-token-given' },
    });
    t.after(() => given.close());
    const seen = recordHeaders(given);
    await pushDeployment(dep, given);
    assert.ok(seen.length > 3);
    assert.deepEqual([...new Set(seen.map((h) => h['x-amz-security-token']))], ['session-token-given']);

    // The CLI opens its target with no credentials: the SDK's chain reads the environment, token included.
    process.env.AWS_SESSION_TOKEN = 'session-token-from-env';
    t.after(() => delete process.env.AWS_SESSION_TOKEN);
    const chain = await openTarget(url, { endpoint: server.env.S3_ENDPOINT });
    t.after(() => chain.close());
    const seenChain = recordHeaders(chain);
    assert.equal((await pushDeployment(dep, chain)).storages[0]!.pushed.length, 0);
    assert.ok(seenChain.length > 0);
    assert.deepEqual([...new Set(seenChain.map((h) => h['x-amz-security-token']))], ['session-token-from-env']);
    // Without it, none is sent.
    delete process.env.AWS_SESSION_TOKEN;
    const plain = await openTarget(url, { endpoint: server.env.S3_ENDPOINT });
    t.after(() => plain.close());
    const seenPlain = recordHeaders(plain);
    await pushDeployment(dep, plain);
    assert.ok(seenPlain.length > 0 && seenPlain.every((h) => h['x-amz-security-token'] === undefined));
  });
});

describe('a listing with a limit reads only the newest manifests (real S3 server)', () => {
  it('one listing per space, one read per generation shown; the older ones counted', async (t) => {
    const root = tmpDir(t);
    const { s, dep, points } = await production(t, path.join(root, 'prod'));
    await s.site.close();
    const url = await server.bucket();
    const target = await server.open(url);
    t.after(() => target.close());
    await pushDeployment(dep, target);
    const requests = async (limit?: number) => {
      const before = target.stats.requests;
      const views = await listRemote(['main'], target, limit === undefined ? {} : { limit });
      return { views, requests: target.stats.requests - before };
    };
    const all = await requests();
    assert.deepEqual(
      all.views[0]!.generations.map((g) => g.stamp),
      points.map((p) => p.stamp),
    );
    assert.equal(all.views[0]!.older, undefined);
    // Three spaces listed (backups, snapshots, zip backups), and a manifest read per generation: 3 + 3.
    assert.equal(all.requests, 6);
    const two = await requests(2);
    assert.deepEqual(
      two.views[0]!.generations.map((g) => g.stamp),
      points.slice(1).map((p) => p.stamp),
    );
    assert.equal(two.views[0]!.older, 1);
    assert.equal(two.requests, 5);
  });
});

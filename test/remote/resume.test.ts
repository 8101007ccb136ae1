/**
 * An interrupted multipart upload is continued by the next push, against a
 * real S3 server (Ceph RGW): a push cancelled after two parts of a big blob
 * file, a part of it then replaced on the server by other bytes and a second
 * open upload of the key started (a dead push's); the next push sends only
 * the parts the server lacks or holds otherwise (counted by a middleware on
 * the real SDK client, which also stops the first push), completes the
 * upload, aborts the other one, and a restore gets the file byte for byte.
 * Plain and encrypted (whose parts match because a file is sealed the same
 * way every time).
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CreateMultipartUploadCommand, ListMultipartUploadsCommand, ListPartsCommand, UploadPartCommand } from '@aws-sdk/client-s3';
import { EncryptedTarget, S3Target, pushDeployment, type KeySource, type RemoteTarget } from '../../src/engine/internal';
import { tmpDir } from '../support/fs';
import { backupPoint, blobsOf, emptySite, filterBlobs, production, restoreFrom, useS3 } from './s3support';

const server = useS3();
const PART = 5 << 20;

/** The target with a middleware on its real client counting the parts it sends, and a hook after each. */
async function instrumented(url: string, key: KeySource | undefined, afterPart?: (n: number) => void) {
  const t: RemoteTarget = await server.open(url, { multipartThreshold: PART, key, create: true });
  const s3 = (t instanceof EncryptedTarget ? t.inner : t) as S3Target;
  const sent = { parts: 0, bytes: 0 };
  s3.client.middlewareStack.add(
    (next, context) => async (args) => {
      const r = await next(args);
      if (context.commandName === 'UploadPartCommand') {
        sent.parts++;
        sent.bytes += (args.input as { ContentLength: number }).ContentLength;
        afterPart?.(sent.parts);
      }
      return r;
    },
    { step: 'initialize', name: 'testPartCounter' },
  );
  return { t, sent };
}

describe('an interrupted multipart upload is continued (real S3 server)', () => {
  for (const encrypted of [false, true]) {
    it(`${encrypted ? 'encrypted' : 'plain'}: the next push sends only the parts the server lacks, replaces a part that differs, aborts a stale upload`, async (t) => {
      const root = tmpDir(t);
      const { s, dep, clock } = await production(t, path.join(root, 'prod'));
      const big = randomBytes((26 << 20) + 4321);
      await s.site.uploadFile('big.pdf', big);
      const point = await backupPoint(s, dep, 'backup', clock);
      await s.site.close();
      const url = await server.bucket();
      const bucket = url.slice(5).split('/')[0]!;
      let key: KeySource | undefined;
      if (encrypted) {
        fs.writeFileSync(path.join(root, 'key'), randomBytes(32), { mode: 0o600 });
        key = { keyFile: path.join(root, 'key'), via: 'test key' };
      }

      // 1. Cancelled once two parts are on the server.
      const ac = new AbortController();
      const first = await instrumented(url, key, (n) => n === 2 && ac.abort());
      await assert.rejects(pushDeployment(dep, first.t, { signal: ac.signal }), (e: Error & { code?: string }) => e.code === 'ABORTED');
      first.t.close();
      const uploads = (await server.admin.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? [];
      assert.equal(uploads.length, 1, 'the interrupted upload stays on the server');
      const up = uploads[0]!;
      // Parts in flight when the push was cancelled may still land on the server after it returned:
      // the count of parts held is taken once it stays the same for a second.
      const listParts = async () => (await server.admin.send(new ListPartsCommand({ Bucket: bucket, Key: up.Key, UploadId: up.UploadId }))).Parts ?? [];
      let held = await listParts();
      for (let i = 0; i < 20; i++) {
        await new Promise((r) => setTimeout(r, 1000));
        const again = await listParts();
        if (again.length === held.length) break;
        held = again;
      }
      assert.ok(held.length >= 2, `${held.length} parts held`);
      assert.ok(held.every((p) => p.Size === PART));

      // 2. Part 1 replaced by other bytes of its size; another upload of the key started and left (a dead push's).
      await server.admin.send(new UploadPartCommand({ Bucket: bucket, Key: up.Key, UploadId: up.UploadId, PartNumber: 1, Body: randomBytes(PART) }));
      const stale = await server.admin.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: up.Key }));
      await server.admin.send(new UploadPartCommand({ Bucket: bucket, Key: up.Key, UploadId: stale.UploadId, PartNumber: 1, Body: randomBytes(PART) }));

      // 3. The next push: part 1 again, then only the parts the server lacks.
      const second = await instrumented(url, key);
      const res = await pushDeployment(dep, second.t);
      const stats = { ...second.t.stats };
      second.t.close();
      assert.ok(res.storages[0]!.pushed.includes(point.stamp));
      const stored = (await server.admin.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? [];
      assert.deepEqual(stored, [], 'no upload is left open: the continued one completed, the stale one aborted');
      // The object as stored: the file, or sealed (a 28-byte header and a 16-byte tag per 64 KiB chunk).
      const size = encrypted ? 28 + big.length + 16 * Math.ceil(big.length / (64 << 10)) : big.length;
      const parts = Math.ceil(size / PART);
      assert.equal(second.sent.parts, parts - (held.length - 1), 'every part but those held (less the replaced one) sent once');
      assert.equal(stats.resumed, (held.length - 1) * PART, 'the parts held and matching were not sent again');
      assert.equal(stats.resumed + second.sent.bytes, size, 'the object is the parts held and those sent, nothing more');
      assert.equal(stats.parts, second.sent.parts);

      // 4. The object's bytes: a restore into an empty site gets the file as it was.
      const dev = await emptySite(path.join(root, 'dev'));
      const target = await server.open(url, { key });
      t.after(() => target.close());
      await restoreFrom(dev, target);
      assert.deepEqual(blobsOf(dev.storages[0]!.blobDir!), filterBlobs(point.blobs));
    });
  }
});

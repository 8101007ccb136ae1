/**
 * incremental_blobs archive chains on a real S3 server (Ceph RGW): a site
 * whose blob backups are the recipe's `incremental.gz` chain (a full archive
 * with its .snar, then deltas) pushes each archive once, named in order by
 * every generation's manifest; verify --deep reads them back; a restore from
 * the remote into an empty folder rebuilds each state byte for byte; a
 * damaged delta is found; forget keeps a chain's archives while a kept
 * generation names them.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { RemoteResolver, discoverDeployment, forgetRemote, listGenerations, pushDeployment, verifyRemote } from '../../src/engine/internal';
import { fakeClock } from '../support/fixtures';
import { content, md5File, tmpDir } from '../support/fs';
import { makeSite } from '../support/site';
import { backupPoint, blobsOf, emptySite, filterBlobs, restoreFrom, useS3, type Point } from './s3support';

const server = useS3();

describe('incremental_blobs archive chains go to the remote (real S3 server)', () => {
  it('pushes each archive once, verifies them, restores every state from them into an empty folder, finds a damaged delta', async (t) => {
    const root = tmpDir(t);
    const prod = path.join(root, 'prod');
    const s = await makeSite(t, prod, { docs: 1, files: 2 });
    fs.writeFileSync(path.join(prod, 'plone-backup.json'), JSON.stringify({ blobFormat: 'incremental.gz' }));
    const dep = await discoverDeployment(prod);
    assert.equal(dep.settings.blobFormat, 'incremental.gz');
    const clock = fakeClock('2026-06-01-10-00-00', 3600);
    const points: Point[] = [];
    for (const [i, kind] of (['fullbackup', 'backup', 'backup'] as const).entries()) {
      await s.site.addDocument(`doc ${i}`);
      await s.site.uploadFile(`chain-${i}.pdf`, content(`chain ${i}`, 3000 + i));
      points.push(await backupPoint(s, dep, kind, clock));
    }
    await s.site.close();
    const local = await listGenerations(dep.storages[0]!.dirs.blobBackups, 'blobstorage');
    assert.deepEqual(
      local.map((g) => [g.stamp, g.delta === true, g.archives?.length]),
      points.map((p, i) => [p.stamp, i > 0, i + 1]),
      'the recipe layout: a full archive, then deltas',
    );

    const url = await server.bucket();
    const target = await server.open(url);
    t.after(() => target.close());
    const res = await pushDeployment(dep, target);
    assert.deepEqual(
      res.storages[0]!.pushed,
      points.map((p) => p.stamp),
    );
    assert.deepEqual(res.storages[0]!.skipped, [], 'no generation left out');
    const archives = (await server.rawKeys(url)).filter((k) => k.includes('/main/archives/'));
    assert.deepEqual(archives, [
      `sites/prod/main/archives/${points[0]!.stamp}.tar.gz`,
      `sites/prod/main/archives/${points[1]!.stamp}.delta.tar.gz`,
      `sites/prod/main/archives/${points[2]!.stamp}.delta.tar.gz`,
    ]);
    // 3 pieces, 3 indexes, 3 archives: each archive once, though later manifests name the earlier ones again.
    assert.equal(res.storages[0]!.objects, 9);
    const m = await new RemoteResolver(target, 'main').manifest(points[2]!.stamp);
    assert.deepEqual(
      m!.archives!.map((a) => a.name),
      archives.map((k) => path.basename(k)),
    );
    const fresh = await server.open(url);
    const again = await pushDeployment(dep, fresh);
    fresh.close();
    assert.equal(again.stats.written, 0, 'a second push sends nothing');
    assert.deepEqual((await verifyRemote(['main'], target, { deep: true }))[0]!.problems, []);

    // Every state, from the remote into a folder holding nothing.
    for (const [i, p] of points.entries()) {
      const dev = await emptySite(path.join(root, `dev-${i}`));
      const r = await restoreFrom(dev, target, p.stamp);
      assert.equal(r.results[0]!.stamp, p.stamp);
      assert.equal(md5File(dev.storages[0]!.file), p.md5);
      assert.deepEqual(blobsOf(dev.storages[0]!.blobDir!), filterBlobs(p.blobs));
    }

    // forget --keep 1: one chain, all kept, its archives with it.
    const forgot = await forgetRemote(dep, target, { keep: 1 });
    assert.deepEqual(forgot.storages[0]!.forgotten, []);
    assert.deepEqual(forgot.storages[0]!.objects, []);

    // A damaged delta: found by reading it back, refused by a restore.
    const victim = archives[1]!;
    await server.rawPut(url, victim, Buffer.alloc((await server.rawGet(url, victim)).length, 5));
    assert.match((await verifyRemote(['main'], target, { deep: true }))[0]!.problems.join('\n'), /delta\.tar\.gz on .* does not match its SHA-256/);
    const dev = await emptySite(path.join(root, 'dev-bad'));
    await assert.rejects(restoreFrom(dev, target), (e: Error & { code?: string }) => e.code === 'REMOTE_BAD');
    assert.equal(fs.existsSync(dev.storages[0]!.file), false);
  });
});

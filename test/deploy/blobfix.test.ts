/**
 * The engine's part of the editor's live blob check and its Quick Fix
 * (deploy/blobfix.ts): the recent blob files come from the live check's scan
 * cache; a re-stat reports exactly the deleted ones (as check does), and says
 * "changed" once Data.fs moved on; the source of a missing file is the newest
 * generation of the live state that holds it, never an older state (whose
 * restore would replace Data.fs).
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  backupDeployment,
  blobFolders,
  checkLive,
  discoverDeployment,
  findBlobSource,
  lastDistinct,
  listDeployment,
  liveStateOf,
  newLiveScanCache,
  recentBlobs,
  restatRecentBlobs,
  sameStateGenerations,
  type RecentBlob,
  type StorageView,
} from '../../src/engine/internal';
import { planOf, makeSite, sampleSite } from '../support/site';
import { fakeClock } from '../support/fixtures';
import { tmpDir } from '../support/fs';

describe('blobfix: pure parts', () => {
  it('lastDistinct: the last items with distinct keys, the last first, at most max', () => {
    assert.deepEqual(lastDistinct([1, 2, 3, 2, 4, 4], String, 10), [4, 2, 3, 1]);
    assert.deepEqual(lastDistinct([1, 2, 3, 2, 4, 4], String, 2), [4, 2]);
    assert.deepEqual(lastDistinct([], String, 3), []);
  });

  it('blobFolders: the distinct folders in order, at most max', () => {
    const b = (p: string) => ({ rel: p, path: `/b/${p}`, oid: Buffer.alloc(8), tid: Buffer.alloc(8) }) as RecentBlob;
    const blobs = [b('x/1.blob'), b('x/2.blob'), b('y/1.blob'), b('z/1.blob'), b('x/3.blob')];
    assert.deepEqual(blobFolders(blobs, 10), ['/b/x', '/b/y', '/b/z']);
    assert.deepEqual(blobFolders(blobs, 2), ['/b/x', '/b/y']);
  });

  it('sameStateGenerations: only dir generations of the live state (end and last tid), newest first, backups before snapshots', () => {
    const gen = (stamp: string, end: number, lastTid: string, blob: StorageView['groups'][number]['chains'][number]['full']['blob']) =>
      ({
        name: `${stamp}.fsz`,
        stamp,
        full: true,
        gzip: true,
        diskSize: 1,
        start: 4,
        end,
        registered: true,
        transactions: 1,
        lastTid,
        blobs: [],
        kind: 'backup',
        chain: stamp,
        blob,
      }) as StorageView['groups'][number]['chains'][number]['full'];
    const view: StorageView = {
      storage: 'main',
      file: '/v/filestorage/Data.fs',
      blobDir: '/v/blobstorage',
      groups: [
        {
          kind: 'backup',
          repository: '/v/backups',
          chains: [
            {
              full: gen('2026-03-01-10-00-00', 100, 'aa', { status: 'match', path: '/v/bb/blobstorage.2026-03-01-10-00-00' }),
              incrementals: [gen('2026-03-01-11-00-00', 200, 'bb', { status: 'match', path: '/v/bb/blobstorage.2026-03-01-11-00-00' })],
            },
            { full: gen('2026-03-01-12-00-00', 200, 'bb', { status: 'mismatch', path: '/v/bb/blobstorage.2026-03-01-12-00-00' }), incrementals: [] },
          ],
          unmatchedGenerations: [],
        },
        {
          kind: 'snapshot',
          repository: '/v/snapshotbackups',
          chains: [{ full: gen('2026-03-01-12-00-00', 200, 'bb', { status: 'match', path: '/v/sb/blobstorage.2026-03-01-12-00-00' }), incrementals: [] }],
          unmatchedGenerations: [],
        },
        {
          kind: 'zip',
          repository: '/v/zipbackups',
          chains: [{ full: gen('2026-03-01-13-00-00', 200, 'bb', { status: 'archived', path: '/v/zb/blobstorage.0.tar' }), incrementals: [] }],
          unmatchedGenerations: [],
        },
      ],
    };
    const got = sameStateGenerations(view, { end: 200, lastTid: 'bb' }).map((c) => `${c.kind} ${c.stamp} ${c.content}`);
    assert.deepEqual(got, [
      'backup 2026-03-01-12-00-00 /v/bb/blobstorage.2026-03-01-12-00-00/blobstorage',
      'snapshot 2026-03-01-12-00-00 /v/sb/blobstorage.2026-03-01-12-00-00/blobstorage',
      'backup 2026-03-01-11-00-00 /v/bb/blobstorage.2026-03-01-11-00-00/blobstorage',
    ]);
    assert.deepEqual(sameStateGenerations(view, { end: 200, lastTid: 'cc' }), [], 'the same length is not the same state');
    assert.deepEqual(sameStateGenerations(view, { end: 300, lastTid: 'dd' }), [], 'the site moved on: no generation of its state');
  });
});

describe('blobfix: on a site', () => {
  it('a deleted recent blob file is reported by the re-stat; its source is the backup of the live state, whose restore is "unchanged"', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root, { files: 3 });
    await s.site.close();
    const dep = await discoverDeployment(root);
    const storage = dep.storages[0]!;
    await backupDeployment(dep, 'backup', { now: fakeClock().now });
    const cache = newLiveScanCache();
    assert.deepEqual(await checkLive(storage, { cache }), []);

    const recent = (await recentBlobs(storage, cache, 256))!;
    assert.equal(recent.blobs.length, 3);
    for (const b of recent.blobs) assert.ok(fs.statSync(b.path).isFile(), b.path);
    assert.equal((await recentBlobs(storage, cache, 2))!.blobs.length, 2, 'bounded');

    const victim = recent.blobs[1]!;
    const saved = fs.readFileSync(victim.path);
    fs.rmSync(victim.path);
    const r = await restatRecentBlobs(storage, recent);
    assert.equal(r.changed, false);
    if (r.changed) return;
    assert.deepEqual(
      r.missing.map((f) => f.blobFile),
      [victim.path],
    );
    assert.equal(r.present.length, 2);
    // The same finding as the full check's.
    const full = (await checkLive(storage, { cache: newLiveScanCache() })).filter((f) => f.code === 'BLOB_MISSING');
    assert.deepEqual(r.missing, full);

    const views = await listDeployment(dep);
    const live = liveStateOf(storage, cache)!;
    const src = (await findBlobSource(views[0]!, live, [victim.rel]))!;
    assert.ok(src, 'no source');
    assert.equal(src.kind, 'backup');
    assert.deepEqual(fs.readFileSync(path.join(src.content, victim.rel)), saved);
    const plans = await planOf(dep, { kind: src.kind, date: src.stamp });
    assert.deepEqual(
      plans.map((p) => p.mode),
      ['unchanged'],
    );

    // The site moves on: the recent list is stale, and no generation holds its state.
    const site = await sampleSite(t, { file: s.file, blobDir: s.blobDir, open: true });
    await site.addDocument('Later');
    await site.close();
    assert.deepEqual(await restatRecentBlobs(storage, recent), { changed: true });
    await checkLive(storage, { cache });
    assert.equal(await findBlobSource(views[0]!, liveStateOf(storage, cache)!, [victim.rel]), undefined);
  });
});

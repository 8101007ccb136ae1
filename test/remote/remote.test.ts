/**
 * Off-site generations against a real S3 server (Ceph RGW, started by
 * ../shared/s3/start-s3.sh for this file and destroyed after it) and a
 * file:// folder, through the same code: push, push again (nothing sent,
 * counted per request), push after new blobs (only those, a big one in
 * parts), a restore from the remote into an empty folder and into an older
 * dev site (only what is missing travels), a damaged object found by verify
 * and refused by a restore, a garbled manifest refused, two pushes at once
 * (a reader never sees half a generation), the cache trimmed after a
 * restore, and the CLI with credentials from the environment (never
 * printed), drill --from, push in the run log and on_failure.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  RemoteResolver,
  type S3Target,
  backupDeployment,
  discoverDeployment,
  blobId,
  blobObjectKey,
  forgetRemote,
  listRemote,
  listGenerations,
  openRemoteRestore,
  openTarget,
  packKey,
  pushDeployment,
  readRuns,
  remoteCacheDir,
  runLogPath,
  verifyRemote,
} from '../../src/engine/internal';
import { blobContents, content, md5File, tmpDir } from '../support/fs';
import { CLI } from '../support/paths';
import { backupPoint, blobIds, blobsOf, emptySite, filterBlobs, production, restoreFrom, useS3 } from './s3support';
import { xorByte } from '../support/must';

const server = useS3();
const bucket = () => server.bucket();
const s3 = (url: string, multipartThreshold?: number) => server.open(url, { multipartThreshold });

describe('push and restore through a real S3 server (Ceph RGW)', () => {
  it('pushes every generation, then nothing, then only the new blobs; restores into an empty and an older site', async (t) => {
    const root = tmpDir(t);
    const { s, dep, points, clock } = await production(t, path.join(root, 'prod'));
    const url = await bucket();

    // 1. The first push: every generation, each blob file once.
    let target = await s3(url);
    const first = await pushDeployment(dep, target);
    target.close();
    assert.deepEqual(
      first.storages[0]!.pushed,
      points.map((p) => p.stamp),
    );
    const allBlobs = new Set(points.flatMap((p) => Object.keys(filterBlobs(p.blobs)))).size;
    // 3 pieces + 3 indexes + the packs of the small blob files, at most one per generation (layout.ts).
    const packs = (await server.rawKeys(url)).filter((k) => k.includes('/main/packs/'));
    assert.ok(packs.length >= 1 && packs.length <= 3, `${packs.length} packs`);
    assert.ok(!(await server.rawKeys(url)).some((k) => k.includes('/main/blobs/')), 'no small blob file is an object of its own');
    assert.equal(first.storages[0]!.objects, 3 + 3 + packs.length);
    // ... and the three manifests, and the push's lock on the remote (lock.ts).
    assert.equal(first.stats.written, 3 + 3 + packs.length + 3 + 1);
    // Each blob file once: the manifests' own entries name every file once, each at a slice of its own.
    target = await s3(url);
    const resolver = new RemoteResolver(target, 'main');
    const own = (await Promise.all(points.map(async (p) => (await resolver.manifest(p.stamp))!.blobs!.files))).flat();
    assert.equal(own.length, allBlobs);
    assert.equal(new Set(own.map((e) => `${e[4]}:${e[5]}`)).size, allBlobs);
    assert.ok(own.every((e) => e.length === 6 && packs.includes(`sites/prod/${packKey('main', e[4])}`)));
    target.close();
    /** The objects holding these blob files (packs, or their own). */
    const objectsOf = async (rels: string[], stamp: string) => {
      const t2 = await s3(url);
      const all = await new RemoteResolver(t2, 'main').blobs(stamp);
      t2.close();
      return new Set(rels.map((r) => blobIds(r)).map(({ oid, tid }) => blobObjectKey('main', all.get(blobId(oid, tid))!))).size;
    };

    // 2. Again: the look for an encryption marker, one listing, nothing written (no lock either).
    target = await s3(url);
    const again = await pushDeployment(dep, target);
    target.close();
    assert.deepEqual(again.storages[0]!.pushed, []);
    assert.equal(again.stats.written, 0);
    assert.equal(again.stats.requests, 2, 'a push with nothing new looks for the marker and lists the generations once');

    // 3. Three new blob files, one of them big enough to go up in parts.
    await s.site.uploadFile('new-a.pdf', content('new a', 2500));
    await s.site.uploadFile('new-b.pdf', content('new b', 2600));
    await s.site.uploadFile('big.pdf', content('big', (5 << 20) + 12345));
    points.push(await backupPoint(s, dep, 'backup', clock));
    await s.site.close();
    target = await s3(url, 5 << 20);
    const sent: string[] = [];
    (target as S3Target).client.middlewareStack.add(
      (next, context) => async (args) => {
        const input = args.input as { Key?: string; Prefix?: string };
        sent.push(`${context.commandName} ${input.Key ?? input.Prefix ?? ''}`);
        return next(args);
      },
      { step: 'initialize', name: 'testCommandRecorder' },
    );
    const third = await pushDeployment(dep, target);
    target.close();
    assert.deepEqual(third.storages[0]!.pushed, [points[3]!.stamp]);
    // The new piece, its index, the big blob file, one pack of the two small ones: nothing else.
    assert.equal(third.storages[0]!.objects, 4);
    // The index told there was something new: the lock first, then the one listing of the generations, made under it.
    const listings = sent.flatMap((x, i) => (/^ListObjectsV2Command .*\/main\/generations\/$/.test(x) ? [i] : []));
    assert.equal(listings.length, 1, sent.join('\n'));
    assert.ok(listings[0]! > sent.findIndex((x) => /^PutObjectCommand .*\/locks\/push-/.test(x)), sent.join('\n'));
    // The marker's GET, the lock (PUT, listing, DELETE), the one listing, four single PUTs, the big
    // file's HEAD + its open uploads listed + create + 2 parts + complete + HEAD, the manifest.
    assert.ok(third.stats.requests <= 1 + 3 + 1 + 4 + 7 + 1, `a push after three new blobs took ${third.stats.requests} requests`);
    const gens = (await listGenerations(dep.storages[0]!.dirs.blobBackups, 'blobstorage')).map((g) => g.stamp);
    assert.deepEqual(
      gens,
      points.map((p) => p.stamp),
    );

    // list --from: every generation, with what it holds.
    target = await s3(url);
    const [view] = await listRemote(['main'], target);
    assert.deepEqual(
      view!.generations.map((g) => g.stamp),
      points.map((p) => p.stamp),
    );
    assert.deepEqual(
      view!.generations.map((g) => g.full),
      [true, false, false, false],
    );
    assert.equal(view!.generations[3]!.blobFiles, Object.keys(points[3]!.blobs).length);
    const [verified] = await verifyRemote(['main'], target, { deep: true });
    assert.deepEqual(verified!.problems, []);
    target.close();

    // 4. Into a folder holding nothing yet: the state of point 1, byte for byte.
    const dev = await emptySite(path.join(root, 'dev'));
    target = await s3(url);
    const r1 = await restoreFrom(dev, target, points[1]!.stamp);
    target.close();
    assert.equal(r1.results[0]!.mode, 'full');
    assert.equal(md5File(dev.storages[0]!.file), points[1]!.md5);
    assert.deepEqual(blobsOf(dev.storages[0]!.blobDir!), filterBlobs(points[1]!.blobs));
    const piecesAt1 = 2;
    // A ranged GET per pack: the packs hold nothing else.
    assert.equal(r1.fetched[0]!.fetched, piecesAt1 + 1 + (await objectsOf(Object.keys(filterBlobs(points[1]!.blobs)), points[1]!.stamp)));
    // The cache after the restore: the restored chain's pieces and its .dat, nothing else (no blob file, no index).
    const cache = remoteCacheDir(dev.storages[0]!, url);
    assert.deepEqual(fs.readdirSync(cache), ['backups']);
    assert.deepEqual(fs.readdirSync(path.join(cache, 'backups')).sort(), [...r1.fetched[0]!.pieces, `${points[0]!.stamp}.dat`].sort());

    // 5. The dev site refreshed to the newest: only the pieces and blob files it lacks travel, appended incrementally.
    target = await s3(url);
    const r2 = await restoreFrom(dev, target);
    target.close();
    assert.equal(r2.results[0]!.mode, 'incremental');
    assert.equal(md5File(dev.storages[0]!.file), points[3]!.md5);
    assert.deepEqual(blobsOf(dev.storages[0]!.blobDir!), filterBlobs(points[3]!.blobs));
    const newBlobs = Object.keys(filterBlobs(points[3]!.blobs)).filter((k) => !(k in points[1]!.blobs));
    assert.equal(r2.fetched[0]!.fetched, 2 + 1 + (await objectsOf(newBlobs, points[3]!.stamp)), 'two new pieces, the index, the packs (and the big file) of the new blob files');
    assert.ok(r2.fetched[0]!.bytes < 2 * (5 << 20), 'only the new blob files travelled');
    assert.equal(r2.fetched[0]!.liveBlobs, Object.keys(filterBlobs(points[1]!.blobs)).length);

    // 6. A dev site in an older state that did not come through this cache: its blob files do not travel.
    const other = path.join(root, 'other');
    fs.mkdirSync(path.join(other, 'var', 'filestorage'), { recursive: true });
    const otherDep = await emptySite(other);
    target = await s3(url);
    await restoreFrom(otherDep, target, points[1]!.stamp);
    fs.rmSync(path.join(other, 'var', 'remotecache'), { recursive: true });
    const r3 = await restoreFrom(otherDep, target);
    target.close();
    assert.equal(r3.results[0]!.mode, 'incremental');
    assert.equal(r3.fetched[0]!.liveBlobs, Object.keys(filterBlobs(points[1]!.blobs)).length);
    assert.equal(md5File(otherDep.storages[0]!.file), points[3]!.md5);
    assert.deepEqual(blobsOf(otherDep.storages[0]!.blobDir!), filterBlobs(points[3]!.blobs));
  });

  it('finds a damaged object (verify, --deep) and refuses it on restore; refuses a garbled manifest', async (t) => {
    const root = tmpDir(t);
    const { s, dep, points } = await production(t, path.join(root, 'prod'));
    await s.site.close();
    const url = await bucket();
    const target = await s3(url);
    t.after(() => target.close());
    await pushDeployment(dep, target);

    // A blob file's bytes in its pack replaced by as many other bytes: only reading it back tells.
    const rel = Object.keys(points[0]!.blobs).find((k) => k.endsWith('.blob'))!;
    const { oid, tid } = blobIds(rel);
    const at = await server.blobAt(url, target, 'main', oid, tid);
    assert.match(at.key, /\/main\/packs\/[0-9a-f]{64}\.pack$/);
    const original = await server.rawGet(url, at.key);
    await server.damageBlob(url, target, 'main', oid, tid);
    assert.deepEqual((await verifyRemote(['main'], target))[0]!.problems, []);
    const deep = (await verifyRemote(['main'], target, { deep: true }))[0]!.problems;
    assert.equal(deep.length, 1);
    assert.match(deep[0]!, new RegExp(`blob file ${oid}/${tid} in .*packs/.* does not match its SHA-256`));
    // A restore fetching it refuses it, and changes nothing.
    const dev = await emptySite(path.join(root, 'dev'));
    await assert.rejects(restoreFrom(dev, target), (e: Error & { code?: string }) => e.code === 'REMOTE_BAD' && e.message.includes(`${oid}/${tid}`));
    assert.equal(fs.existsSync(dev.storages[0]!.file), false);
    // Bytes added at the end of a pack, outside every slice: its SHA-256 is no longer its name.
    await server.rawPut(url, at.key, Buffer.concat([original, Buffer.from('x')]));
    assert.deepEqual((await verifyRemote(['main'], target, { deep: true }))[0]!.problems, [`${at.key.replace('sites/prod/', '')} on ${url} does not match its SHA-256 (its name)`]);

    // Shorter: presence with its size is enough.
    await server.rawPut(url, at.key, Buffer.alloc(3, 7));
    assert.match((await verifyRemote(['main'], target))[0]!.problems.join('\n'), /is 3 bytes/);

    // A manifest naming a path outside its layout (a hostile remote) is refused, not followed.
    const bad = {
      format: 'plone-backup-remote-generation',
      version: 1,
      storage: 'main',
      stamp: '2026-06-02-00-00-00',
      full: '2026-06-02-00-00-00',
      pieces: [{ name: '../../etc/passwd', start: 0, end: 4, md5: '0'.repeat(32), size: 4, sha256: '0'.repeat(64) }],
    };
    await server.rawPut(url, 'sites/prod/main/generations/2026-06-02-00-00-00.json', Buffer.from(JSON.stringify(bad)));
    const [view] = await listRemote(['main'], target);
    assert.match(view!.generations.at(-1)!.problem ?? '', /cannot be trusted: piece 1 is not named as a repozo piece/);
    await assert.rejects(restoreFrom(dev, target), (e: Error & { code?: string }) => e.code === 'REMOTE_BAD');
    assert.equal(fs.existsSync(path.join(root, 'etc')), false);
  });

  it('the same files make the same packs: two pushes of one site into two buckets write packs of the same names', async (t) => {
    const root = tmpDir(t);
    const { s, dep, clock } = await production(t, path.join(root, 'prod'));
    // Many small files of very different sizes: read 16 at a time, they come back in another order every run.
    for (let i = 0; i < 120; i++) await s.site.uploadFile(`many-${i}.pdf`, content(`many ${i}`, i % 3 === 0 ? 700_000 + i : 900 + i));
    await backupPoint(s, dep, 'backup', clock);
    await s.site.close();
    const packsOf = async (url: string) => {
      const target = await s3(url);
      try {
        await pushDeployment(dep, target);
      } finally {
        target.close();
      }
      return (await server.rawKeys(url)).filter((k) => k.includes('/packs/')).map((k) => k.slice(k.lastIndexOf('/packs/')));
    };
    const first = await packsOf(await bucket());
    const second = await packsOf(await bucket());
    assert.ok(first.length >= 2, `${first.length} packs`);
    assert.deepEqual(second.sort(), first.sort());
  });

  it('two restores from the remote into one site: the second waits for the first, or is told a restore runs (never that the site runs)', async (t) => {
    const root = tmpDir(t);
    const { s, dep, points } = await production(t, path.join(root, 'prod'));
    await s.site.close();
    const url = await bucket();
    const [a, b] = await Promise.all([s3(url), s3(url)]);
    t.after(() => [a, b].forEach((x) => x.close()));
    await pushDeployment(dep, a);
    const dev = await emptySite(path.join(root, 'dev'));
    const first = await openRemoteRestore(dev, a, { date: points[1]!.stamp, keepOld: false });
    // Told, not waiting long: another restore from a remote holds the site.
    await assert.rejects(openRemoteRestore(dev, b, { keepOld: false, lockWaitMs: 300 }), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'LOCKED', e.message);
      assert.match(e.message, /restore from a remote/);
      return true;
    });
    // Waiting: the second goes on once the first is done, and restores what it was asked for.
    const second = openRemoteRestore(dev, b, { keepOld: false, lockWaitMs: 60_000 });
    second.catch(() => undefined); // awaited below; a failure must not count as unhandled meanwhile
    await first.session.run();
    await first.session.close();
    assert.equal(md5File(dev.storages[0]!.file), points[1]!.md5);
    const { session } = await second;
    try {
      await session.run();
    } finally {
      await session.close();
    }
    assert.equal(md5File(dev.storages[0]!.file), points[2]!.md5);
    assert.deepEqual(blobsOf(dev.storages[0]!.blobDir!), filterBlobs(points[2]!.blobs));
  });

  it('two pushes at once write every generation once; a reader never sees half of one', async (t) => {
    const root = tmpDir(t);
    const { s, dep, points } = await production(t, path.join(root, 'prod'));
    await s.site.close();
    const url = await bucket();
    const [a, b, reader] = await Promise.all([s3(url), s3(url), s3(url)]);
    t.after(() => [a, b, reader].forEach((x) => x.close()));
    let pushing = true;
    const seen: string[][] = [];
    const read = (async () => {
      // Whatever the reader lists is whole: every object its manifests name is there.
      while (pushing) {
        const [v] = await verifyRemote(['main'], reader);
        assert.deepEqual(v!.problems, []);
        seen.push((await listRemote(['main'], reader))[0]!.generations.map((g) => g.stamp));
      }
    })();
    const [ra, rb] = await Promise.all([pushDeployment(dep, a), pushDeployment(dep, b)]).finally(() => {
      pushing = false;
    });
    await read;
    const pushed = [...ra.storages[0]!.pushed, ...rb.storages[0]!.pushed].sort();
    assert.deepEqual(
      pushed,
      points.map((p) => p.stamp),
      'each generation written by exactly one of them',
    );
    const [v] = await verifyRemote(['main'], reader, { deep: true });
    assert.deepEqual(v!.problems, []);
    assert.ok(seen.length >= 1);
  });
});

describe('a push that loses the race for a generation (real S3 server)', () => {
  it("learns the winner's packs: a forget deletes the loser's, and a later generation names only packs that are there", async (t) => {
    const root = tmpDir(t);
    const { s, dep, clock } = await production(t, path.join(root, 'prod'));
    // The same backups in another folder (its own push index): the other site of the race.
    fs.cpSync(path.join(root, 'prod'), path.join(root, 'twin'), { recursive: true });
    const twin = await discoverDeployment(path.join(root, 'twin'));
    const url = await bucket();
    const [a, b] = await Promise.all([s3(url), s3(url)]);
    t.after(() => [a, b].forEach((x) => x.close()));
    // a has sent its first generation's objects, and the twin pushes everything before a's first manifest lands.
    let raced = false;
    // The packs each side wrote. A pack is named by its bytes, and the same files make the same pack
    // (push.ts packs them in one order), so the loser's packs are usually the twin's and nothing is
    // left over; whatever the loser wrote that the twin did not is an orphan for forget.
    const packsPut = new Map<S3Target, Set<string>>([
      [a as S3Target, new Set()],
      [b as S3Target, new Set()],
    ]);
    for (const [target, put] of packsPut)
      target.client.middlewareStack.add(
        (next, context) => async (args) => {
          const k = (args.input as { Key?: string }).Key ?? '';
          if (k.includes('/packs/') && /^(PutObject|CreateMultipartUpload)Command$/.test(context.commandName ?? '')) put.add(k.slice(k.lastIndexOf('/packs/')));
          return next(args);
        },
        { step: 'initialize', name: 'testPacks' },
      );
    (a as S3Target).client.middlewareStack.add(
      (next) => async (args) => {
        const k = (args.input as { Key?: string }).Key ?? '';
        if (!raced && k.includes('/generations/')) {
          raced = true;
          assert.equal((await pushDeployment(twin, b)).storages[0]!.pushed.length, 3);
        }
        return next(args);
      },
      { step: 'initialize', name: 'testRace' },
    );
    const lost = await pushDeployment(dep, a);
    assert.equal(raced, true);
    assert.deepEqual(lost.storages[0]!.pushed, [], "every generation was the twin's");
    assert.ok(lost.storages[0]!.objects > 0, 'the loser sent packs of its own');
    // Keep every generation: only what no manifest names goes, the loser's packs among it.
    const forgot = await forgetRemote(dep, a, { keep: 10 });
    const orphans = [...packsPut.get(a as S3Target)!].filter((k) => !packsPut.get(b as S3Target)!.has(k)).sort();
    assert.ok(packsPut.get(a as S3Target)!.size > 0, 'the loser wrote packs');
    t.diagnostic(`the loser wrote ${packsPut.get(a as S3Target)!.size} pack(s), ${orphans.length} of them not the twin's`);
    assert.deepEqual(
      forgot.storages[0]!.objects.filter((k) => k.includes('/packs/'))
        .map((k) => k.slice(k.lastIndexOf('/packs/')))
        .sort(),
      orphans,
      'exactly the packs of the loser that the twin did not write too',
    );
    // A new chain from the loser's site names its blob files by its push index: where the twin put them.
    await s.site.uploadFile('after.pdf', content('after', 2700));
    const p = await backupPoint(s, dep, 'fullbackup', clock);
    await s.site.close();
    const c = await s3(url);
    t.after(() => c.close());
    assert.deepEqual((await pushDeployment(dep, c)).storages[0]!.pushed, [p.stamp]);
    assert.deepEqual((await verifyRemote(['main'], c, { deep: true }))[0]!.problems, []);
    const dev = await emptySite(path.join(root, 'dev'));
    await restoreFrom(dev, c);
    assert.deepEqual(blobsOf(dev.storages[0]!.blobDir!), filterBlobs(p.blobs));
  });
});

describe('snapshots and zip backups go to the remote too (real S3 server)', () => {
  it('pushes them into their spaces, lists and verifies them, restores each from the remote (snapshotrestore, ziprestore --from), forgets each on its own', async (t) => {
    const root = tmpDir(t);
    const { s, dep, points, clock } = await production(t, path.join(root, 'prod'));
    await s.site.uploadFile('snap.pdf', content('snap', 4100));
    const [snap] = await backupDeployment(dep, 'snapshot', { now: clock.now });
    const snapPoint = { stamp: snap!.filestorage.stamp!, md5: md5File(s.file), blobs: filterBlobs(blobContents(s.blobDir)) };
    await s.site.uploadFile('zip.pdf', content('zip', 4200));
    const [zip] = await backupDeployment(dep, 'zipbackup', { now: clock.now });
    const zipPoint = { stamp: zip!.filestorage.stamp!, md5: md5File(s.file), blobs: filterBlobs(blobContents(s.blobDir)) };
    await s.site.close();
    const url = await bucket();
    const target = await s3(url);
    t.after(() => target.close());

    const res = await pushDeployment(dep, target);
    assert.deepEqual(
      res.storages.map((x) => [x.storage, x.kind, x.pushed]),
      [
        ['main', 'backup', points.map((p) => p.stamp)],
        ['main/snapshot', 'snapshot', [snapPoint.stamp]],
        ['main/zip', 'zip', [zipPoint.stamp]],
      ],
    );
    const keys = await server.rawKeys(url);
    assert.ok(keys.includes(`sites/prod/main/zip/archives/${zipPoint.stamp}.tar`), "the zip backup's blob archive, as it is");
    assert.ok(keys.some((k) => k.startsWith('sites/prod/main/snapshot/packs/')));
    const again = await pushDeployment(dep, target);
    assert.deepEqual(
      again.storages.map((x) => x.pushed.length),
      [0, 0, 0],
    );
    const views = await listRemote(['main'], target);
    assert.deepEqual(
      views.map((v) => [v.storage, v.generations.map((g) => g.stamp)]),
      [
        ['main', points.map((p) => p.stamp)],
        ['main/snapshot', [snapPoint.stamp]],
        ['main/zip', [zipPoint.stamp]],
      ],
    );
    const verified = await verifyRemote(['main'], target, { deep: true });
    assert.deepEqual(
      verified.map((v) => [v.storage, v.problems]),
      [
        ['main', []],
        ['main/snapshot', []],
        ['main/zip', []],
      ],
    );

    // Each restored from the remote into a folder holding nothing: the state it was made of, byte for byte.
    for (const [kind, point] of [
      ['snapshot', snapPoint],
      ['zip', zipPoint],
    ] as const) {
      const dev = await emptySite(path.join(root, `dev-${kind}`));
      const { session } = await openRemoteRestore(dev, target, { kind, keepOld: false });
      try {
        const [r] = await session.run();
        assert.equal(r!.stamp, point.stamp);
      } finally {
        await session.close();
      }
      assert.equal(md5File(dev.storages[0]!.file), point.md5);
      assert.deepEqual(blobsOf(dev.storages[0]!.blobDir!), point.blobs);
    }
    // The CLI: ziprestore --from into a folder holding nothing.
    const cliDev = path.join(root, 'dev-cli');
    fs.mkdirSync(cliDev);
    const dataFs = path.join(cliDev, 'var', 'filestorage', 'Data.fs');
    const r = spawnSync(process.execPath, [CLI, 'ziprestore', '--from', url, '--yes', '--dir', cliDev, '--file', dataFs, '--blob-dir', path.join(cliDev, 'var', 'blobstorage')], {
      encoding: 'utf8',
      env: { ...process.env, AWS_ENDPOINT_URL_S3: server.env.S3_ENDPOINT },
    });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(md5File(dataFs), zipPoint.md5);
    // A damaged archive is found by verify --deep.
    await server.rawPut(
      url,
      `sites/prod/main/zip/archives/${zipPoint.stamp}.tar`,
      Buffer.alloc((await server.rawGet(url, `sites/prod/main/zip/archives/${zipPoint.stamp}.tar`)).length, 3),
    );
    assert.match((await verifyRemote(['main'], target, { deep: true }))[2]!.problems.join('\n'), /archives\/.*SHA-256/);

    // forget --keep 1: the newest chain of the backups; each space keeps its own newest.
    const forgot = await forgetRemote(dep, target, { keep: 1 });
    assert.deepEqual(
      forgot.storages.map((x) => [x.storage, x.kept, x.forgotten]),
      [
        ['main', points.map((p) => p.stamp), []],
        ['main/snapshot', [snapPoint.stamp], []],
        ['main/zip', [zipPoint.stamp], []],
      ],
    );
    assert.ok((await server.rawKeys(url)).includes(`sites/prod/main/snapshot/generations/${snapPoint.stamp}.json`));
  });
});

describe('a file:// target goes through the same code', () => {
  it('pushes, pushes nothing again, verifies and restores from a folder', async (t) => {
    const root = tmpDir(t);
    const { s, dep, points } = await production(t, path.join(root, 'prod'));
    await s.site.close();
    const url = `file://${path.join(root, 'offsite')}`;
    let target = await openTarget(url);
    const first = await pushDeployment(dep, target);
    assert.deepEqual(
      first.storages[0]!.pushed,
      points.map((p) => p.stamp),
    );
    target = await openTarget(url);
    const again = await pushDeployment(dep, target);
    assert.equal(again.stats.written, 0);
    assert.equal(again.stats.requests, 2);
    assert.deepEqual((await verifyRemote(['main'], target, { deep: true }))[0]!.problems, []);
    const dev = await emptySite(path.join(root, 'dev'));
    const r = await restoreFrom(dev, target);
    assert.equal(md5File(dev.storages[0]!.file), points[2]!.md5);
    assert.deepEqual(blobsOf(dev.storages[0]!.blobDir!), filterBlobs(points[2]!.blobs));
    assert.equal(r.results[0]!.stamp, points[2]!.stamp);
    // A damaged file on the disk is found by reading it back.
    const victim = path.join(root, 'offsite', 'main', 'pieces', fs.readdirSync(path.join(root, 'offsite', 'main', 'pieces'))[0]!);
    const bytes = fs.readFileSync(victim);
    xorByte(bytes, bytes.length >> 1, 0xff);
    fs.writeFileSync(victim, bytes);
    assert.match((await verifyRemote(['main'], target, { deep: true }))[0]!.problems.join('\n'), /does not match its SHA-256/);
  });
});

describe('the CLI', () => {
  it('push --to, list/verify --from, restore --from into an empty folder; credentials from the environment, never printed', async (t) => {
    const root = tmpDir(t);
    const { s, points } = await production(t, path.join(root, 'prod'));
    await s.site.close();
    const url = await bucket();
    const run = (cwd: string, ...args: string[]) => {
      const r = spawnSync(process.execPath, [CLI, ...args], { cwd, encoding: 'utf8', env: { ...process.env, AWS_ENDPOINT_URL_S3: server.env.S3_ENDPOINT } });
      assert.doesNotMatch(r.stdout + r.stderr, new RegExp(server.env.S3_SECRET_KEY!));
      return r;
    };
    const push = run(path.join(root, 'prod'), 'push', '--to', url, '--json');
    assert.equal(push.status, 0, push.stderr);
    assert.equal(JSON.parse(push.stdout).storages[0].pushed.length, 3);
    // From cron, a quiet push with nothing wrong prints nothing at all (cron mails any output): not even
    // the AWS SDK's warning about the Node versions its future releases need (ours is pinned).
    const quiet = spawnSync(process.execPath, [CLI, 'push', '-q', '--to', url], {
      cwd: path.join(root, 'prod'),
      encoding: 'utf8',
      env: { ...process.env, AWS_ENDPOINT_URL_S3: server.env.S3_ENDPOINT, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: undefined },
    });
    assert.equal(quiet.status, 0, quiet.stderr);
    assert.equal(quiet.stdout + quiet.stderr, '');
    const list = run(path.join(root, 'prod'), 'list', '--from', url);
    assert.equal(list.status, 0, list.stderr);
    for (const p of points) assert.match(list.stdout, new RegExp(p.stamp));
    const verify = run(path.join(root, 'prod'), 'verify', '--from', url, '--deep', '--json');
    assert.equal(verify.status, 0, verify.stderr);
    assert.equal(JSON.parse(verify.stdout).ok, true);
    // A folder holding nothing but a plone-backup.json naming the remote.
    const dev = path.join(root, 'dev');
    fs.mkdirSync(dev);
    fs.writeFileSync(path.join(dev, 'plone-backup.json'), JSON.stringify({ remote: { url, endpoint: server.env.S3_ENDPOINT } }));
    const restore = run(dev, 'restore', '--remote', '--yes', points[1]!.stamp);
    assert.equal(restore.status, 0, restore.stderr);
    assert.equal(md5File(path.join(dev, 'var', 'filestorage', 'Data.fs')), points[1]!.md5);
    // Wrong credentials: a typed failure naming what to check, the secret never shown.
    const denied = spawnSync(process.execPath, [CLI, 'list', '--from', url, '--endpoint', server.env.S3_ENDPOINT!], {
      cwd: dev,
      encoding: 'utf8',
      env: { ...process.env, AWS_SECRET_ACCESS_KEY: 'not-the-secret-xyz' },
    });
    assert.equal(denied.status, 1);
    assert.match(denied.stderr, /credentials/);
    assert.doesNotMatch(denied.stderr, /not-the-secret-xyz/);
    // A hostile remote setting in the configuration is refused before anything is asked of a server.
    fs.writeFileSync(path.join(dev, 'plone-backup.json'), JSON.stringify({ remote: { url: 's3://key:secret@bucket/x' } }));
    const hostile = run(dev, 'list', '--remote');
    assert.equal(hostile.status, 2);
    assert.doesNotMatch(hostile.stderr, /secret@/);
  });

  it('drill --from proves the remote; push and drill are runs in the run log; a failed push runs on_failure and makes status CRITICAL', async (t) => {
    const root = tmpDir(t);
    const { s, dep, points } = await production(t, path.join(root, 'prod'));
    await s.site.close();
    const url = await bucket();
    const prod = path.join(root, 'prod');
    const run = (...args: string[]) =>
      spawnSync(process.execPath, [CLI, ...args], { cwd: prod, encoding: 'utf8', env: { ...process.env, AWS_ENDPOINT_URL_S3: server.env.S3_ENDPOINT } });
    const lastRun = async () => (await readRuns(runLogPath(dep))).records.at(-1)!;

    const push = run('push', '--to', url);
    assert.equal(push.status, 0, push.stderr);
    let rec = await lastRun();
    assert.equal(rec.command, 'push');
    assert.equal(rec.outcome, 'ok');
    assert.equal(rec.remote, url);
    assert.equal(rec.storages[0]!.generations, 3);
    assert.equal(rec.storages[0]!.stamp, points[2]!.stamp);
    assert.ok(rec.storages[0]!.objects! > 0 && rec.storages[0]!.bytes! > 0);

    // drill --from: the newest generation on the remote, fetched with every blob file, restored aside and read back.
    const drill = run('drill', '--from', url, '--json');
    assert.equal(drill.status, 0, drill.stderr);
    const d = JSON.parse(drill.stdout) as { ok: boolean; drills: { stamp: string; ok: boolean; blobFiles: number; transactions: number }[] };
    assert.equal(d.ok, true);
    assert.equal(d.drills[0]!.stamp, points[2]!.stamp);
    assert.equal(d.drills[0]!.blobFiles, Object.keys(filterBlobs(points[2]!.blobs)).length);
    assert.ok(d.drills[0]!.transactions > 0);
    const all = JSON.parse(run('drill', '--from', url, '--all', '--json').stdout) as { drills: { stamp: string; ok: boolean }[] };
    assert.deepEqual(
      all.drills.map((x) => [x.stamp, x.ok]),
      points.map((p) => [p.stamp, true]),
    );
    rec = await lastRun();
    assert.equal(rec.command, 'drill');
    assert.equal(rec.outcome, 'ok');
    // The drill left no blob file in the cache.
    const cache = remoteCacheDir(dep.storages[0]!, url);
    assert.deepEqual(fs.readdirSync(cache), ['backups']);
    // A blob object damaged on the server: the drill fails, as a run.
    const rel = Object.keys(filterBlobs(points[2]!.blobs))[0]!;
    const { oid, tid } = blobIds(rel);
    const t3 = await s3(url);
    await server.damageBlob(url, t3, 'main', oid, tid, 1);
    t3.close();
    const bad = run('drill', '--from', url);
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /is not what its manifest says/);
    rec = await lastRun();
    assert.equal(rec.command, 'drill');
    assert.equal(rec.error?.code, 'REMOTE_BAD');

    // A push that fails: recorded, on_failure run with the error, status CRITICAL.
    const marker = path.join(root, 'on-failure.txt');
    const failed = run('push', '--to', 's3://pb-no-such-bucket/x', '--on-failure', `echo "$PLONE_BACKUP_COMMAND $PLONE_BACKUP_ERROR_CODE" > ${marker}`);
    assert.equal(failed.status, 1);
    assert.match(failed.stderr, /NoSuchBucket/);
    assert.equal(fs.readFileSync(marker, 'utf8').trim(), 'push REMOTE_FAILED');
    rec = await lastRun();
    assert.deepEqual([rec.command, rec.outcome, rec.error?.code], ['push', 'failed', 'REMOTE_FAILED']);
    // The failed push names its remote, as a successful one does: in the run log and in the status.
    assert.equal(rec.remote, 's3://pb-no-such-bucket/x');
    const status = run('status');
    assert.equal(status.status, 2, status.stdout);
    assert.match(status.stdout, /CRITICAL.*push to s3:\/\/pb-no-such-bucket\/x failed/);
    assert.equal(JSON.parse(run('status', '--json').stdout).commands.find((c: { command: string }) => c.command === 'push').lastFailure.remote, 's3://pb-no-such-bucket/x');
    // A URL carrying credentials is refused, and never written to the run log.
    const hostile = run('push', '--to', 's3://AKIAEXAMPLE:secret@bucket/x');
    assert.equal(hostile.status, 1);
    assert.match(hostile.stderr, /carries credentials/);
    assert.doesNotMatch(hostile.stderr, /AKIAEXAMPLE|secret@/);
    rec = await lastRun();
    assert.equal(rec.remote, undefined);
    assert.doesNotMatch(fs.readFileSync(runLogPath(dep), 'utf8'), /AKIAEXAMPLE|secret@/);
  });
});

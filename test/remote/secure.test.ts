/**
 * Client-side encryption and remote retention against a real S3 server (Ceph
 * RGW, started for this file): an encrypted push and restore (a big piece in
 * parts, streamed), what the server holds (no oid or tid in a name, no
 * manifest readable), no key and a wrong key refused before anything is
 * written locally, a flipped byte found, encrypted and plain never mixed;
 * forget by chains and by day/week/month on crafted stamps, a blob shared with
 * a kept generation kept, a dry run changing nothing, forgets racing pushes,
 * nothing deleted while a manifest cannot be read,
 * and the CLI (push --forget, forget --dry-run, a passphrase never printed).
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { DeleteObjectCommand } from '@aws-sdk/client-s3';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  type Deployment,
  type KeySource,
  EncryptedTarget,
  MARKER_KEY,
  discoverDeployment,
  forgetRemote,
  listRemote,
  pushDeployment,
  verifyRemote,
} from '../../src/engine/internal';
import { content, md5File, tmpDir } from '../support/fs';
import { CLI } from '../support/paths';
import { makeSite } from '../support/site';
import { backupPoint, blobIds, blobsOf, emptySite, filterBlobs, production, restoreFrom, stampClock, useS3, type Point } from './s3support';
import { xorByte } from '../support/must';

const server = useS3();

function keyFile(root: string, name = 'key'): KeySource {
  const f = path.join(root, name);
  fs.writeFileSync(f, randomBytes(32), { mode: 0o600 });
  return { keyFile: f, via: `--key-file ${f}` };
}

const refused = (code: string, re?: RegExp) => (e: Error & { code?: string }) => e.code === code && (!re || re.test(e.message));

describe('client-side encryption on a real S3 server', () => {
  it('pushes encrypted, restores into an empty and an older site; the server holds no readable manifest and no oid or tid', async (t) => {
    const root = tmpDir(t);
    const { s, dep, points, clock } = await production(t, path.join(root, 'prod'));
    await s.site.uploadFile('big.pdf', content('big', (5 << 20) + 12345));
    points.push(await backupPoint(s, dep, 'backup', clock));
    await s.site.close();
    const url = await server.bucket();
    const key = keyFile(root);
    let target = await server.open(url, { key, create: true, multipartThreshold: 5 << 20 });
    assert.ok(target instanceof EncryptedTarget);
    const pushed = await pushDeployment(dep, target);
    target.close();
    assert.deepEqual(
      pushed.storages[0]!.pushed,
      points.map((p) => p.stamp),
    );

    // What the server holds.
    const keys = await server.rawKeys(url);
    const ids = Object.keys(filterBlobs(points.at(-1)!.blobs)).map(blobIds);
    for (const k of keys) for (const { oid, tid } of ids) assert.ok(!k.includes(oid) && !k.includes(tid), `${k} names a blob`);
    assert.ok(keys.includes(`sites/prod/${MARKER_KEY}`));
    const manifest = await server.rawGet(url, `sites/prod/main/generations/${points[0]!.stamp}.json`);
    assert.equal(manifest.subarray(0, 6).toString('latin1'), 'PBENC1');
    assert.equal(manifest.includes('plone-backup-remote-generation'), false);
    assert.equal(manifest.includes(ids[0]!.oid), false);
    assert.ok(!keys.some((k) => k.startsWith('sites/prod/locks/')), 'the push took its lock away');

    // Read back with the key: list, verify --deep, an incremental push (nothing again).
    target = await server.open(url, { key });
    const [view] = await listRemote(['main'], target);
    assert.deepEqual(
      view!.generations.map((g) => g.stamp),
      points.map((p) => p.stamp),
    );
    assert.deepEqual((await verifyRemote(['main'], target, { deep: true }))[0]!.problems, []);
    const again = await pushDeployment(dep, target);
    assert.equal(again.stats.written, 0);

    // Into an empty folder (point 1), then refreshed to the newest incrementally.
    const dev = await emptySite(path.join(root, 'dev'));
    const r1 = await restoreFrom(dev, target, points[1]!.stamp);
    assert.equal(r1.results[0]!.mode, 'full');
    assert.equal(md5File(dev.storages[0]!.file), points[1]!.md5);
    assert.deepEqual(blobsOf(dev.storages[0]!.blobDir!), filterBlobs(points[1]!.blobs));
    const r2 = await restoreFrom(dev, target);
    assert.equal(r2.results[0]!.mode, 'incremental');
    assert.equal(md5File(dev.storages[0]!.file), points.at(-1)!.md5);
    assert.deepEqual(blobsOf(dev.storages[0]!.blobDir!), filterBlobs(points.at(-1)!.blobs));
    target.close();
  });

  it('refuses no key and a wrong key before anything is written locally; finds a flipped byte; never mixes encrypted and plain', async (t) => {
    const root = tmpDir(t);
    const { s, dep, points } = await production(t, path.join(root, 'prod'));
    await s.site.close();
    const url = await server.bucket();
    const key = keyFile(root);
    const target = await server.open(url, { key, create: true });
    t.after(() => target.close());
    await pushDeployment(dep, target);

    const dev = await emptySite(path.join(root, 'dev'));
    await assert.rejects(server.open(url), refused('REMOTE_KEY', /is encrypted, and no key was given/));
    await assert.rejects(server.open(url, { key: keyFile(root, 'wrong') }), refused('REMOTE_KEY', /is not the one/));
    await assert.rejects(server.open(url, { key: { passphrase: 'guess', via: 'PLONE_BACKUP_PASSPHRASE' } }), refused('REMOTE_KEY'));
    // A push without the key does not write the remote's first plain object either.
    await assert.rejects(server.open(url, { create: true }), refused('REMOTE_KEY'));
    assert.equal(fs.existsSync(path.join(root, 'dev', 'var')), false, 'nothing written locally');

    // A flipped byte in a blob file (its name hidden: found by listing) and in a manifest.
    const blobKeys = (await server.rawKeys(url)).filter((k) => k.includes('/main/packs/'));
    assert.ok(blobKeys.length > 0);
    const victim = blobKeys[0]!;
    const bytes = await server.rawGet(url, victim);
    xorByte(bytes, bytes.length >> 1, 0x01);
    await server.rawPut(url, victim, bytes);
    assert.deepEqual((await verifyRemote(['main'], target))[0]!.problems, [], 'the size is the same');
    const deep = (await verifyRemote(['main'], target, { deep: true }))[0]!.problems;
    assert.equal(deep.length, 1);
    assert.match(deep[0]!, /does not decrypt/);
    await assert.rejects(restoreFrom(dev, target), refused('REMOTE_BAD', /does not decrypt/));
    assert.equal(fs.existsSync(dev.storages[0]!.file), false);
    const mkey = `sites/prod/main/generations/${points[2]!.stamp}.json`;
    const m = await server.rawGet(url, mkey);
    xorByte(m, 40, 0x80);
    await server.rawPut(url, mkey, m);
    const [view] = await listRemote(['main'], target);
    assert.match(view!.generations.at(-1)!.problem ?? '', /does not decrypt/);

    // A plain remote: an encrypted push into it, and reading it with a key, are refused; a plain push stays plain.
    const plainUrl = await server.bucket();
    const plain = await server.open(plainUrl, { create: true });
    await pushDeployment(dep, plain);
    plain.close();
    await assert.rejects(server.open(plainUrl, { key, create: true }), refused('REMOTE_KEY', /already holds unencrypted objects/));
    await assert.rejects(server.open(plainUrl, { key }), refused('REMOTE_KEY', /is not encrypted/));
    assert.ok(!(await server.rawKeys(plainUrl)).some((k) => k.endsWith(MARKER_KEY)));
  });
});

/** A site with full backups at crafted stamps (each its own chain), a blob file added before each. */
async function craftedSite(t: { after: (fn: () => unknown) => void }, root: string, stamps: string[]): Promise<{ dep: Deployment; points: Point[]; close: () => Promise<void> }> {
  const s = await makeSite(t, root, { docs: 1, files: 1 });
  // Every local chain kept: the remote's retention is the one under test.
  const dep = await discoverDeployment(root, { keep: 0 });
  const clock = stampClock(stamps);
  const points: Point[] = [];
  for (const [i] of stamps.entries()) {
    await s.site.uploadFile(`crafted-${i}.pdf`, content(`crafted ${i}`, 2000 + i));
    points.push(await backupPoint(s, dep, 'fullbackup', clock));
  }
  return { dep, points, close: () => s.site.close() };
}

describe('forget: remote retention on a real S3 server', () => {
  it('keeps by day, week and month on crafted stamps; a blob shared with a kept generation stays; a dry run changes nothing', async (t) => {
    const root = tmpDir(t);
    const stamps = ['2026-01-05-10-00-00', '2026-01-20-10-00-00', '2026-02-02-10-00-00', '2026-02-03-09-00-00', '2026-02-03-18-00-00', '2026-02-04-10-00-00'];
    const { dep, points, close } = await craftedSite(t, path.join(root, 'prod'), stamps);
    await close();
    assert.deepEqual(
      points.map((p) => p.stamp),
      stamps,
    );
    const url = await server.bucket();
    const key = keyFile(root);
    const target = (await server.open(url, { key, create: true })) as EncryptedTarget;
    t.after(() => target.close());
    await pushDeployment(dep, target);
    // What an interrupted push leaves: an object no manifest names.
    const orphan = 'main/blobs/0000000000000fff/0000000000000001.blob';
    await target.put(orphan, Buffer.from('orphan'), { size: 6, sha256: '0'.repeat(64) });
    const orphanPack = `main/packs/${'f'.repeat(64)}.pack`;
    await target.put(orphanPack, Buffer.from('orphan pack'), { size: 11, sha256: '0'.repeat(64) });

    const before = await server.rawKeys(url);
    const policy = { keepDaily: 2, keepMonthly: 2 };
    const dry = await forgetRemote(dep, target, policy, { dryRun: true });
    assert.deepEqual(await server.rawKeys(url), before, 'a dry run changes nothing');
    const [A, B, C, D, E, F] = stamps;
    assert.deepEqual(dry.storages[0]!.kept, [B, E, F]);
    assert.deepEqual(dry.storages[0]!.forgotten, [D, C, A]);

    const res = await forgetRemote(dep, target, policy);
    assert.deepEqual(res.storages[0]!.forgotten, [D, C, A]);
    assert.deepEqual(res.storages[0]!.objects, dry.storages[0]!.objects);
    const [view] = await listRemote(['main'], target);
    assert.deepEqual(
      view!.generations.map((g) => g.stamp),
      [B, E, F],
    );
    const after = await server.rawKeys(url);
    // Their pieces and indexes went, the orphan too; the kept ones' stay.
    for (const g of [A, C, D]) assert.ok(!after.some((k) => k.includes(g!)), `${g} left objects`);
    assert.ok(!after.includes(`sites/prod/${target.physicalKey(orphan)}`), 'the orphan went');
    assert.ok(!after.includes(`sites/prod/${orphanPack}`), 'the orphan pack went');
    assert.ok(after.includes(`sites/prod/main/pieces/${B}.fsz`) || after.includes(`sites/prod/main/pieces/${B}.fs`));
    assert.deepEqual((await verifyRemote(['main'], target, { deep: true }))[0]!.problems, []);
    // The blob file of A's state (uploaded before A) is B's too: its pack, pushed with A, stayed, and B restores whole.
    const shared = Object.keys(filterBlobs(points[0]!.blobs)).map(blobIds);
    for (const { oid, tid } of shared) assert.ok(after.includes((await server.blobAt(url, target, 'main', oid, tid)).key));
    const dev = await emptySite(path.join(root, 'dev'));
    await restoreFrom(dev, target, B);
    assert.equal(md5File(dev.storages[0]!.file), points[1]!.md5);
    assert.deepEqual(blobsOf(dev.storages[0]!.blobDir!), filterBlobs(points[1]!.blobs));
    // The push index forgot them too: the next push asks nothing of the forgotten ones.
    const again = await pushDeployment(dep, target);
    assert.deepEqual(again.storages[0]!.pushed, [A, C, D], 'the local generations the remote no longer has go up again');
  });

  it('deletes nothing while a manifest cannot be read (garbled, or not decrypting), with a typed error naming it; the CLI exits 1', async (t) => {
    const root = tmpDir(t);
    const stamps = ['2026-03-01-10-00-00', '2026-03-02-10-00-00', '2026-03-03-10-00-00', '2026-03-04-10-00-00'];
    const { dep, close } = await craftedSite(t, path.join(root, 'prod'), stamps);
    await close();
    for (const key of [undefined, keyFile(root)]) {
      const url = await server.bucket();
      const target = await server.open(url, { key, create: true });
      t.after(() => target.close());
      await pushDeployment(dep, target);
      // The second generation's manifest: garbage on a plain remote; on an encrypted one, a plain JSON that does not decrypt.
      const garbled = `sites/prod/main/generations/${stamps[1]}.json`;
      const good = await server.rawGet(url, garbled);
      await server.rawPut(url, garbled, key ? Buffer.from(JSON.stringify({ format: 'plone-backup-remote-generation' })) : good.subarray(0, good.length - 7));
      const before = await server.rawKeys(url);
      const refused = (e: Error & { code?: string; path?: string }) =>
        e.code === 'REMOTE_BAD' && e.message.startsWith(`Nothing was forgotten on ${url}`) && e.message.includes(`main/generations/${stamps[1]}.json`);
      await assert.rejects(forgetRemote(dep, target, { keep: 1 }), refused);
      await assert.rejects(forgetRemote(dep, target, { keepDaily: 1 }, { dryRun: true }), refused);
      assert.deepEqual(await server.rawKeys(url), before, 'not a manifest, not an object deleted');
      // The CLI: one sentence, exit 1, still nothing deleted.
      const env: Record<string, string> = { ...(process.env as Record<string, string>), AWS_ENDPOINT_URL_S3: server.env.S3_ENDPOINT! };
      const r = spawnSync(process.execPath, [CLI, 'forget', '--remote', url, '--keep', '1', ...(key ? ['--key-file', key.keyFile!] : [])], {
        cwd: path.join(root, 'prod'),
        encoding: 'utf8',
        env,
      });
      assert.equal(r.status, 1, r.stderr);
      assert.match(r.stderr, /Nothing was forgotten on .*cannot be read/);
      assert.deepEqual(await server.rawKeys(url), before);
      // Once the damaged manifest is gone, the forget runs.
      await server.admin.send(new DeleteObjectCommand({ Bucket: url.slice(5).split('/')[0]!, Key: garbled }));
      const res = await forgetRemote(dep, target, { keep: 1 });
      assert.deepEqual(res.storages[0]!.kept, [stamps[3]]);
    }
  });

  it('keeps the newest chains (--keep N); a forget racing pushes never removes what a new manifest names', async (t) => {
    const root = tmpDir(t);
    const { s, dep, points, clock } = await production(t, path.join(root, 'prod'));
    const url = await server.bucket();
    const a = await server.open(url, { create: true });
    t.after(() => a.close());
    await pushDeployment(dep, a);
    // Two more chains: each full generation names every blob file the older chains pushed
    // (the push's index knows them there and does not send them again).
    for (let round = 0; round < 3; round++) {
      await s.site.uploadFile(`round-${round}.pdf`, content(`round ${round}`, 2500));
      points.push(await backupPoint(s, dep, 'fullbackup', clock));
      await s.site.addDocument(`round ${round}`);
      points.push(await backupPoint(s, dep, 'backup', clock));
      const b = await server.open(url);
      const [p, f] = await Promise.allSettled([pushDeployment(dep, a, { lockWaitMs: 600_000 }), forgetRemote(dep, b, { keep: 1 }, { lockWaitMs: 600_000 })]);
      b.close();
      assert.equal(p.status, 'fulfilled', p.status === 'rejected' ? String(p.reason) : '');
      assert.equal(f.status, 'fulfilled', f.status === 'rejected' ? String(f.reason) : '');
      // Whatever ran first: every remaining generation is whole, and the newest restores.
      const reader = await server.open(url);
      assert.deepEqual((await verifyRemote(['main'], reader, { deep: true }))[0]!.problems, []);
      const stamps = (await listRemote(['main'], reader))[0]!.generations.map((g) => g.stamp);
      assert.equal(stamps.at(-1), points.at(-1)!.stamp);
      const dev = await emptySite(path.join(root, `dev-${round}`));
      await restoreFrom(dev, reader);
      assert.equal(md5File(dev.storages[0]!.file), points.at(-1)!.md5);
      reader.close();
    }
    await s.site.close();
    // Now alone: keep 1 leaves the newest chain only (its full generation and incremental).
    const res = await forgetRemote(dep, a, { keep: 1 });
    assert.deepEqual(
      res.storages[0]!.kept,
      points.slice(-2).map((p) => p.stamp),
    );
    assert.deepEqual(
      (await listRemote(['main'], a))[0]!.generations.map((g) => g.stamp),
      points.slice(-2).map((p) => p.stamp),
    );
    assert.deepEqual((await verifyRemote(['main'], a, { deep: true }))[0]!.problems, []);
    assert.ok(!(await server.rawKeys(url)).some((k) => k.includes('/locks/')), 'no lock left behind');
  });
});

describe('the CLI', () => {
  it('push with a passphrase, list refused without it, forget --dry-run, push --forget; the passphrase never printed', async (t) => {
    const root = tmpDir(t);
    const { s, dep, clock, points } = await production(t, path.join(root, 'prod'));
    const url = await server.bucket();
    const secret = `pass-${randomBytes(6).toString('hex')}`;
    let cwd = path.join(root, 'prod');
    const run = (env: Record<string, string>, ...args: string[]) => {
      const r = spawnSync(process.execPath, [CLI, ...args], { cwd, encoding: 'utf8', env: { ...process.env, AWS_ENDPOINT_URL_S3: server.env.S3_ENDPOINT, ...env } });
      assert.doesNotMatch(r.stdout + r.stderr, new RegExp(secret));
      return r;
    };
    const withPass = { PROD_BACKUP_PASS: secret };
    fs.writeFileSync(path.join(root, 'prod', 'plone-backup.json'), JSON.stringify({ remote: { url, passphraseEnv: 'PROD_BACKUP_PASS', keep: 1 } }));
    const push = run(withPass, 'push', '--json');
    assert.equal(push.status, 0, push.stderr);
    assert.equal(JSON.parse(push.stdout).storages[0].pushed.length, 3);
    const noKey = run({}, 'list', '--remote');
    assert.equal(noKey.status, 1);
    assert.match(noKey.stderr, /PROD_BACKUP_PASS, which is not set/);
    const wrong = run({ PROD_BACKUP_PASS: 'not it' }, 'list', '--remote');
    assert.equal(wrong.status, 1);
    assert.match(wrong.stderr, /is not the one .* is encrypted with/);
    // A dev folder: a restore with the wrong passphrase writes nothing there.
    const devDir = path.join(root, 'dev');
    fs.mkdirSync(devDir);
    fs.writeFileSync(path.join(devDir, 'plone-backup.json'), JSON.stringify({ remote: { url, passphraseEnv: 'PROD_BACKUP_PASS' } }));
    cwd = devDir;
    const refusedRestore = run({ PROD_BACKUP_PASS: 'not it' }, 'restore', '--remote', '--yes');
    assert.equal(refusedRestore.status, 1);
    assert.match(refusedRestore.stderr, /not the one/);
    // (the failed run is recorded in the run log, as every failed restore is; nothing else)
    assert.equal(fs.existsSync(path.join(devDir, 'var', 'remotecache')), false);
    assert.equal(fs.existsSync(path.join(devDir, 'var', 'filestorage')), false);
    cwd = path.join(root, 'prod');
    const listed = run(withPass, 'list', '--remote', url);
    assert.equal(listed.status, 0, listed.stderr);
    // A passphrase in the file itself is refused.
    fs.writeFileSync(path.join(root, 'dev.json'), JSON.stringify({ remote: { url, passphrase: secret } }));
    const inFile = run({}, 'list', '--remote', '--config', path.join(root, 'dev.json'));
    assert.equal(inFile.status, 2);

    // A new chain; forget --dry-run names what would go, push --forget does it after pushing.
    await s.site.uploadFile('later.pdf', content('later', 2100));
    points.push(await backupPoint(s, dep, 'fullbackup', clock));
    await s.site.close();
    const pushed = run(withPass, 'push');
    assert.equal(pushed.status, 0, pushed.stderr);
    const before = await server.rawKeys(url);
    const dry = run(withPass, 'forget', '--dry-run');
    assert.equal(dry.status, 0, dry.stderr);
    for (const p of points.slice(0, 3)) assert.match(dry.stdout, new RegExp(`generation ${p.stamp}`));
    assert.deepEqual(await server.rawKeys(url), before);
    const forgot = run(withPass, 'push', '--forget', '--json');
    assert.equal(forgot.status, 0, forgot.stderr);
    assert.deepEqual(JSON.parse(forgot.stdout).forget.storages[0].kept, [points[3]!.stamp]);
    const verify = run(withPass, 'verify', '--remote', '--deep', '--json');
    assert.equal(verify.status, 0, verify.stderr);
    assert.equal(JSON.parse(verify.stdout).storages[0].generations, 1);
    fs.writeFileSync(path.join(root, 'dev.json'), JSON.stringify({ remote: { url } }));
    const noRule = run(withPass, 'forget', '--remote', url, '--config', path.join(root, 'dev.json'));
    assert.equal(noRule.status, 2);
    assert.match(noRule.stderr, /forget needs a rule/);
  });
});

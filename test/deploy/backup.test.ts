/**
 * A deployment backup proves: each filestorage piece gets a blob generation
 * `blobstorage.<STAMP>/blobstorage/...` with the piece's own stamp, holding
 * exactly the blob files the backed-up state references (never tmp/, never
 * the file of a transaction that is voted but not finished); unchanged files
 * are hard links to the previous generation; `latest` points at the newest;
 * every storage (the catalog too) is backed up; a missing referenced blob
 * fails with BLOB_MISSING and registers nothing; a pack that removes a blob
 * mid-backup makes it start over, or fail clearly, never half-registered.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { backupDeployment, BLOB_PICKLE, discoverDeployment, drillDeployment, fileLayer, idRepr, listGenerations, readManifest, readManifestHead } from '../../src/engine/internal';
import { referencedBlobs, rejectsWith } from '../support/assert';
import { fakeClock } from '../support/fixtures';
import { blobFiles, content, copy, snapshot, tempLeftovers, tmpDir } from '../support/fs';
import { FIXTURES } from '../support/paths';
import { makeSite, generationBlobFiles, generationFile } from '../support/site';
import { nth } from '../support/must';

describe('deployment backup', () => {
  it('writes a generation with the piece stamp, exactly the referenced blobs, hard links and latest', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root, { docs: 3, files: 3 });
    const clock = fakeClock();
    const dep = await discoverDeployment(root);
    // The recipe's tree layout (a buildout's); the pool (our default) has blobpool.test.ts.
    dep.settings.blobFormat = 'dir';
    const blobBackups = path.join(s.varDir, 'blobstoragebackups');

    // A stray file in tmp/ and a blob of a voted, unfinished transaction must not be backed up.
    fs.writeFileSync(path.join(s.blobDir, 'tmp', 'upload-in-progress'), 'x');
    const oid = s.site.writer.newOid();
    const voted = await s.site.writer.vote({ description: 'uploading', records: [{ oid, data: BLOB_PICKLE, blob: content('uncommitted') }] });
    const uncommitted = blobFiles(s.blobDir).filter((r) => r.endsWith(`/${idRepr(voted.tid)}.blob`));
    assert.equal(uncommitted.length, 1, 'the voted blob is in place, as ZODB puts it at vote');

    const r1 = nth(await backupDeployment(dep, 'backup', { now: clock.now }), 0);
    assert.equal(r1.filestorage.action, 'full');
    assert.equal(r1.attempts, 1);
    const stamp1 = r1.filestorage.stamp!;
    assert.equal(r1.blobGeneration, path.join(blobBackups, `blobstorage.${stamp1}`));
    const gen1 = path.join(r1.blobGeneration!, 'blobstorage');
    const committedRefs = await referencedBlobs(s.file);
    assert.equal(committedRefs.length, 3);
    assert.deepEqual(blobFiles(gen1), committedRefs, 'exactly the committed blobs');
    assert.ok(!fs.existsSync(path.join(gen1, 'tmp')));
    assert.ok(!fs.existsSync(path.join(gen1, nth(uncommitted, 0))));
    assert.equal(fs.readFileSync(path.join(gen1, '.layout'), 'utf8').trim(), 'bushy');
    for (const rel of committedRefs) assert.deepEqual(fs.readFileSync(path.join(gen1, rel)), fs.readFileSync(path.join(s.blobDir, rel)));
    assert.equal(fs.readlinkSync(path.join(blobBackups, 'latest')), `blobstorage.${stamp1}`);
    assert.ok(fs.existsSync(path.join(s.varDir, 'backups', `${stamp1}.fsz`)));
    const m1 = await readManifest({ name: `blobstorage.${stamp1}`, path: r1.blobGeneration!, kind: 'dir', stamp: stamp1 });
    assert.equal(m1?.stamp, stamp1);
    assert.equal(m1?.end, r1.filestorage.end);
    // Its head alone says what it describes: read without the file list (here cut off).
    const g1 = { name: `blobstorage.${stamp1}`, path: r1.blobGeneration!, kind: 'dir' as const, stamp: stamp1 };
    const { files: _files, ...described } = m1!;
    assert.deepEqual(await readManifestHead(g1), described);
    const manifestFile = path.join(r1.blobGeneration!, '.plone-backup.json');
    const whole = fs.readFileSync(manifestFile);
    fs.writeFileSync(manifestFile, whole.subarray(0, whole.indexOf('"files":') + 12));
    // A cut-off file list is no manifest to trust: refused whole; the head alone still reads.
    await rejectsWith(readManifest(g1), 'MANIFEST_BAD');
    assert.deepEqual(await readManifestHead(g1), described);
    fs.writeFileSync(manifestFile, whole);

    // Finish the voted one; add more: the next generation links what it can.
    await s.site.writer.finish();
    const newOid = await s.site.uploadFile('new.pdf', content('new'));
    await s.site.addDocument('after');
    const r2 = nth(await backupDeployment(dep, 'backup', { now: clock.now }), 0);
    assert.equal(r2.filestorage.action, 'incremental');
    const stamp2 = r2.filestorage.stamp!;
    assert.ok(stamp2 > stamp1);
    const gen2 = path.join(r2.blobGeneration!, 'blobstorage');
    const refs2 = await referencedBlobs(s.file);
    assert.equal(refs2.length, 5);
    assert.deepEqual(blobFiles(gen2), refs2);
    assert.equal(r2.linked, 3);
    assert.equal(r2.copied, 2);
    for (const rel of committedRefs) {
      assert.equal(fs.statSync(path.join(gen2, rel)).ino, fs.statSync(path.join(gen1, rel)).ino, `${rel} is a hard link to the previous generation`);
    }
    for (const rel of refs2.filter((r) => !committedRefs.includes(r))) {
      assert.notEqual(fs.statSync(path.join(gen2, rel)).ino, fs.statSync(path.join(s.blobDir, rel)).ino, 'new files are copies of the live ones');
    }
    assert.equal(fs.readlinkSync(path.join(blobBackups, 'latest')), `blobstorage.${stamp2}`);
    assert.ok(newOid);

    // Nothing new: no piece, no generation.
    const r3 = nth(await backupDeployment(dep, 'backup', { now: clock.now }), 0);
    assert.equal(r3.filestorage.action, 'none');
    assert.equal(r3.blobGeneration, undefined);
    assert.deepEqual(
      (await listGenerations(blobBackups, 'blobstorage')).map((g) => g.stamp),
      [stamp1, stamp2],
    );
    // A full backup into the same folders gets its own complete generation.
    const r4 = nth(await backupDeployment(dep, 'fullbackup', { now: clock.now }), 0);
    assert.equal(r4.filestorage.action, 'full');
    assert.deepEqual(await generationBlobFiles(r4.blobGeneration!), refs2);
    assert.equal(r4.linked, 5);
    assert.deepEqual(tempLeftovers(s.varDir), []);
  });

  it('a piece whose generation was lost gets one on the next run, even with nothing new', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root);
    const clock = fakeClock();
    const dep = await discoverDeployment(root);
    const r1 = nth(await backupDeployment(dep, 'backup', { now: clock.now }), 0);
    fs.rmSync(r1.blobGeneration!, { recursive: true });
    const r2 = nth(await backupDeployment(dep, 'backup', { now: clock.now }), 0);
    assert.equal(r2.filestorage.action, 'none');
    assert.equal(r2.blobGeneration, r1.blobGeneration);
    assert.deepEqual(await generationBlobFiles(r2.blobGeneration!), await referencedBlobs(s.file));
  });

  it('backs up every storage: the catalog into backups_catalog and blobstoragebackups_catalog', async (t) => {
    const root = tmpDir(t);
    const main = await makeSite(t, root, { files: 1 });
    const cat = await makeSite(t, root, { name: 'catalog', files: 2 });
    const dep = await discoverDeployment(root);
    assert.deepEqual(
      dep.storages.map((x) => x.name),
      ['main', 'catalog'],
    );
    const res = await backupDeployment(dep, 'backup', { now: fakeClock().now });
    assert.deepEqual(
      res.map((r) => r.storage),
      ['catalog', 'main'],
      'additional storages first, as the recipe does',
    );
    const v = main.varDir;
    for (const [r, site, sfx] of [
      [nth(res, 1), main, ''],
      [nth(res, 0), cat, '_catalog'],
    ] as const) {
      assert.ok(fs.existsSync(path.join(v, `backups${sfx}`, r.filestorage.piece!)));
      assert.equal(path.dirname(r.blobGeneration!), path.join(v, `blobstoragebackups${sfx}`));
      assert.equal(path.basename(r.blobGeneration!), `${path.basename(site.blobDir)}.${r.filestorage.stamp}.json`);
      assert.deepEqual(await generationBlobFiles(r.blobGeneration!), await referencedBlobs(site.file));
    }
  });

  it('a lawn-layout blobstorage (made by ZODB) is backed up in its own layout and drills clean', async (t) => {
    const root = tmpDir(t);
    const v = path.join(root, 'var');
    copy(path.join(FIXTURES, 'lawn', 'blobstorage'), path.join(v, 'blobstorage'));
    fs.mkdirSync(path.join(v, 'filestorage'));
    for (const n of ['Data.fs', 'Data.fs.index']) fs.copyFileSync(path.join(FIXTURES, 'lawn', n), path.join(v, 'filestorage', n));
    const dep = await discoverDeployment(root);
    const r = nth(await backupDeployment(dep, 'backup', { now: fakeClock().now }), 0);
    assert.equal(fs.readFileSync(generationFile(r.blobGeneration!, '.layout'), 'utf8').trim(), 'lawn');
    const refs = await referencedBlobs(path.join(v, 'filestorage', 'Data.fs'), 'lawn');
    assert.ok(refs.length >= 4);
    assert.deepEqual(await generationBlobFiles(r.blobGeneration!), refs);
    assert.ok(
      refs.every((x) => /^0x[0-9a-f]+\/0x[0-9a-f]+\.blob$/.test(x)),
      'lawn paths',
    );
    const d = nth(await drillDeployment(dep), 0);
    assert.ok(d.ok, d.problems.join('; '));
    assert.equal(d.blobFiles, refs.length);
  });

  it('a missing referenced blob fails with BLOB_MISSING and registers nothing', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root, { files: 2 });
    const clock = fakeClock();
    const dep = await discoverDeployment(root);
    await backupDeployment(dep, 'backup', { now: clock.now });
    await s.site.uploadFile('later.pdf', content('later'));
    const refs = await referencedBlobs(s.file);
    const victim = nth(refs, refs.length - 1);
    fs.rmSync(path.join(s.blobDir, victim));
    fs.rmSync(path.join(s.blobDir, nth(refs, 0)));
    const backups = snapshot(path.join(s.varDir, 'backups'));
    const gens = snapshot(path.join(s.varDir, 'blobstoragebackups'));
    for (const kind of ['backup', 'fullbackup', 'snapshot', 'zipbackup'] as const) {
      const e = await rejectsWith(backupDeployment(dep, kind, { now: clock.now }), 'BLOB_MISSING');
      // Every kind names them all, also a snapshot (a first generation, which finds them by copying);
      // an incremental into the pool looks only at the new piece's file, as the pool holds the other.
      assert.match(e.message, kind === 'backup' ? /^1 blob file / : /^2 blob files /, kind);
      assert.ok(e.message.includes(kind === 'backup' ? victim : nth(refs, 0)), `${kind}: the message names the first file`);
      assert.match(e.message, /not made/);
      assert.deepEqual(snapshot(path.join(s.varDir, 'backups')), backups, `${kind}: repository unchanged`);
      assert.deepEqual(snapshot(path.join(s.varDir, 'blobstoragebackups')), gens, `${kind}: blob backups unchanged`);
    }
    for (const d of ['snapshotbackups', 'zipbackups']) assert.deepEqual(snapshot(path.join(s.varDir, d)), {}, `${d} holds nothing`);
    for (const d of ['blobstoragesnapshots', 'blobstoragezips']) assert.deepEqual(snapshot(path.join(s.varDir, d)), {}, `${d} holds nothing`);
  });

  it('a pack that removes a blob mid-backup makes the backup start over', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root, { files: 1 });
    const clock = fakeClock();
    const dep = await discoverDeployment(root);
    const fileOid = await s.site.uploadFile('report.pdf', content('r1'));
    await backupDeployment(dep, 'backup', { now: clock.now });
    // Two new revisions; the first of them is in no generation yet.
    await s.site.uploadFile('report.pdf', content('r2'), fileOid);
    await s.site.uploadFile('report.pdf', content('r3'), fileOid);
    const before = await referencedBlobs(s.file);

    // The pack runs right after the backup opened Data.fs (when it creates its first temp file).
    const realOpen = fileLayer.open;
    let packs = 0;
    fileLayer.open = async (p, flags, mode) => {
      if (packs === 0 && /\.(fsz|deltafsz)\./.test(path.basename(p))) {
        packs++;
        await s.site.writer.pack();
      }
      return realOpen(p, flags, mode);
    };
    let res;
    try {
      res = nth(await backupDeployment(dep, 'backup', { now: clock.now }), 0);
    } finally {
      fileLayer.open = realOpen;
    }
    assert.equal(packs, 1);
    assert.equal(res.attempts, 2, 'started over once');
    assert.equal(res.filestorage.action, 'full', 'the packed Data.fs needs a full backup');
    const after = await referencedBlobs(s.file);
    assert.ok(after.length < before.length, 'the pack removed old revisions');
    assert.deepEqual(await generationBlobFiles(res.blobGeneration!), after);
    assert.deepEqual(tempLeftovers(s.varDir), []);

    // With no retries left, the same race fails clearly and registers nothing.
    await s.site.uploadFile('report.pdf', content('r4'), fileOid);
    await s.site.uploadFile('report.pdf', content('r5'), fileOid);
    const backups = snapshot(path.join(s.varDir, 'backups'));
    const gens = snapshot(path.join(s.varDir, 'blobstoragebackups'));
    packs = 0;
    fileLayer.open = async (p, flags, mode) => {
      if (packs === 0 && /\.(fsz|deltafsz)\./.test(path.basename(p))) {
        packs++;
        await s.site.writer.pack();
      }
      return realOpen(p, flags, mode);
    };
    try {
      const e = await rejectsWith(backupDeployment(dep, 'backup', { now: clock.now, retries: 0 }), 'SOURCE_CHANGED');
      assert.match(e.message, /disappeared/);
    } finally {
      fileLayer.open = realOpen;
    }
    assert.equal(packs, 1);
    assert.deepEqual(snapshot(path.join(s.varDir, 'backups')), backups);
    assert.deepEqual(snapshot(path.join(s.varDir, 'blobstoragebackups')), gens);
  });
});

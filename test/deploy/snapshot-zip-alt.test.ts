/**
 * The other backup kinds prove: a snapshot is a full backup with its own
 * generation in snapshotbackups/ + blobstoragesnapshots/ and snapshotrestore
 * brings it back; a zipbackup is one .fsz plus one tar of exactly the
 * referenced blobs (readable by the system tar) and ziprestore brings it
 * back; altrestore restores from a folder holding Data.fs + blobstorage and
 * from another deployment's var/ (its backups, as the recipe's altrestore,
 * or without them its live files, refused while that site runs).
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { altSource, backupDeployment, discoverDeployment, restoreDeployment } from '../../src/engine/internal';
import { assertConsistent, referencedBlobs, rejectsWith } from '../support/assert';
import { fakeClock } from '../support/fixtures';
import { blobContents, content, md5File, snapshot, tempLeftovers, tmpDir } from '../support/fs';
import { holdSiteLock } from '../support/processes';
import { makeSite, generationBlobFiles } from '../support/site';
import { nth } from '../support/must';

describe('snapshots, zip backups and altrestore', () => {
  it('snapshot and snapshotrestore', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root, { files: 3 });
    const dep = await discoverDeployment(root);
    const clock = fakeClock();
    await backupDeployment(dep, 'backup', { now: clock.now });
    await s.site.addDocument('between');
    const snap = nth(await backupDeployment(dep, 'snapshot', { now: clock.now }), 0);
    assert.equal(snap.filestorage.action, 'full', 'a snapshot is always full');
    assert.equal(path.dirname(snap.blobGeneration!), path.join(s.varDir, 'blobstoragesnapshots'));
    assert.ok(fs.existsSync(path.join(s.varDir, 'snapshotbackups', snap.filestorage.piece!)));
    assert.deepEqual(await generationBlobFiles(snap.blobGeneration!), await referencedBlobs(s.file));
    // In the pool (our default): no `latest` link, which only the recipe's trees have.
    assert.ok(!fs.existsSync(path.join(s.varDir, 'blobstoragesnapshots', 'latest')));
    const want = { fs: md5File(s.file), blobs: blobContents(s.blobDir) };
    // A second snapshot with nothing new is still a full one.
    const snap2 = nth(await backupDeployment(dep, 'snapshot', { now: clock.now }), 0);
    assert.equal(snap2.filestorage.action, 'full');
    await s.site.uploadFile('after.pdf', content('after'));
    await s.site.close();
    const r = nth(await restoreDeployment(dep, { kind: 'snapshot', date: snap.filestorage.stamp }), 0);
    assert.equal(r.stamp, snap.filestorage.stamp);
    assert.equal(md5File(s.file), want.fs);
    assert.deepEqual(blobContents(s.blobDir), want.blobs);
    await assertConsistent(s.file, s.blobDir);
  });

  it('zipbackup writes one .fsz and one blob tar; ziprestore restores them', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root, { files: 3 });
    const dep = await discoverDeployment(root);
    const clock = fakeClock();
    fs.writeFileSync(path.join(s.blobDir, 'tmp', 'partial-upload'), 'x');
    const z1 = nth(await backupDeployment(dep, 'zipbackup', { now: clock.now }), 0);
    await s.site.uploadFile('second.pdf', content('second'));
    const z = nth(await backupDeployment(dep, 'zipbackup', { now: clock.now }), 0);
    assert.equal(z.filestorage.action, 'full');
    assert.match(z.filestorage.piece!, /\.fsz$/);
    const zips = path.join(s.varDir, 'zipbackups');
    const blobZips = path.join(s.varDir, 'blobstoragezips');
    assert.deepEqual(
      fs.readdirSync(zips).filter((n) => /\.fsz$/.test(n)),
      [z.filestorage.piece],
      'keepZips=1: the older zip is gone',
    );
    assert.deepEqual(fs.readdirSync(blobZips), [`blobstorage.${z.filestorage.stamp}.tar`]);
    assert.ok(!fs.existsSync(z1.blobGeneration!));
    // The archive is the recipe's (`tar -C blobstorage .`): exactly the referenced files and
    // .layout at its root, so the recipe's ziprestore (`tar xf ARCHIVE -C var/blobstorage`) works.
    const listing = execFileSync('tar', ['-tf', z.blobGeneration!], { encoding: 'utf8' }).split('\n').filter(Boolean);
    assert.equal(listing[0], './');
    const files = listing.filter((n) => !n.endsWith('/'));
    assert.deepEqual(files.sort(), ['./.layout', ...(await referencedBlobs(s.file)).map((r) => `./${r}`)].sort());
    const x = tmpDir(t);
    execFileSync('tar', ['-xf', z.blobGeneration!, '-C', x]);
    assert.deepEqual(blobContents(x), blobContents(s.blobDir));
    const want = { fs: md5File(s.file), blobs: blobContents(s.blobDir) };
    await s.site.uploadFile('third.pdf', content('third'));
    await s.site.close();
    const r = nth(await restoreDeployment(dep, { kind: 'zip' }), 0);
    assert.equal(r.stamp, z.filestorage.stamp);
    assert.equal(md5File(s.file), want.fs);
    assert.deepEqual(blobContents(s.blobDir), want.blobs);
    await assertConsistent(s.file, s.blobDir);
    assert.deepEqual(tempLeftovers(s.varDir), []);
  });

  it('altrestore from a folder with Data.fs and blobstorage', async (t) => {
    const src = tmpDir(t);
    const other = await makeSite(t, path.join(src, 'site'), { docs: 4, files: 3 });
    await other.site.close();
    const carried = path.join(src, 'carried');
    fs.mkdirSync(carried);
    fs.copyFileSync(other.file, path.join(carried, 'Data.fs'));
    fs.cpSync(other.blobDir, path.join(carried, 'blobstorage'), { recursive: true });

    const root = tmpDir(t);
    const s = await makeSite(t, root, { files: 1 });
    await s.site.close();
    const dep = await discoverDeployment(root);
    const source = await altSource(carried, nth(dep.storages, 0));
    assert.deepEqual(source, { type: 'copy', file: path.join(carried, 'Data.fs'), blobDir: path.join(carried, 'blobstorage') });
    const before = md5File(s.file);
    const r = nth(await restoreDeployment(dep, { source: (x) => altSource(carried, x), now: fakeClock('2026-08-01-00-00-00').now }), 0);
    assert.equal(r.mode, 'full');
    assert.equal(md5File(s.file), md5File(other.file));
    assert.deepEqual(blobContents(s.blobDir), blobContents(other.blobDir));
    assert.equal(md5File(`${s.file}.before-restore-2026-08-01-00-00-00`), before);
    await assertConsistent(s.file, s.blobDir);
    // The source is left as it was.
    assert.equal(md5File(path.join(carried, 'Data.fs')), md5File(other.file));
  });

  it("altrestore from another deployment's var/: its backups first, else its files (not while it runs)", async (t) => {
    const src = tmpDir(t);
    const other = await makeSite(t, src, { docs: 3, files: 2 });
    const dep2 = await discoverDeployment(src);
    const ob = nth(await backupDeployment(dep2, 'backup', { now: fakeClock().now }), 0);
    const backedUp = md5File(other.file);
    // The other site goes on after its backup: its live files are newer than its backups.
    await other.site.addDocument('after the backup');
    await other.site.close();
    assert.notEqual(md5File(other.file), backedUp);

    const root = tmpDir(t);
    const s = await makeSite(t, root, { files: 1 });
    await s.site.close();
    const dep = await discoverDeployment(root);
    const otherVar = path.join(src, 'var');
    // As the recipe's altrestore: the backups, consistent by construction.
    const found = await altSource(otherVar, nth(dep.storages, 0));
    assert.deepEqual(found, { type: 'repository', repo: path.join(otherVar, 'backups'), blobs: path.join(otherVar, 'blobstoragebackups') });
    const r = nth(await restoreDeployment(dep, { source: (x) => altSource(otherVar, x), keepOld: false }), 0);
    assert.equal(r.stamp, ob.filestorage.stamp);
    assert.equal(md5File(s.file), backedUp);
    await assertConsistent(s.file, s.blobDir);

    // Without backups, the other var/ is restored from its live files...
    fs.renameSync(path.join(otherVar, 'backups'), path.join(src, 'moved-backups'));
    const live = await altSource(otherVar, nth(dep.storages, 0));
    assert.deepEqual(live, { type: 'copy', file: other.file, blobDir: other.blobDir });
    await restoreDeployment(dep, { source: (x) => altSource(otherVar, x), keepOld: false });
    assert.equal(md5File(s.file), md5File(other.file));
    assert.deepEqual(blobContents(s.blobDir), blobContents(other.blobDir));
    await assertConsistent(s.file, s.blobDir);

    // ... but not while that site runs (its files would change under the copy), unless forced.
    await holdSiteLock(t, other.file);
    const before = snapshot(path.dirname(s.file));
    const e = await rejectsWith(restoreDeployment(dep, { source: (x) => altSource(otherVar, x) }), 'SITE_RUNNING');
    assert.match(e.message, /being restored from is running/);
    assert.deepEqual(snapshot(path.dirname(s.file)), before);
    await restoreDeployment(dep, { source: (x) => altSource(otherVar, x), keepOld: false, force: true });
  });
});

/**
 * Restores that leave a trace: the states they kept are listed (one entry per
 * restore, every storage, sizes), deleted on request, and the last one put
 * back by "undo", itself a restore that keeps what it replaces (so an undo can
 * be undone). The live Data.fs is recognised as the backup it equals.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { backupDeployment, deleteKept, discoverDeployment, listDeployment, listKept, liveGenerations, restoreDeployment, undoRestore } from '../../src/engine/internal';
import { rejectsWith } from '../support/assert';
import { fakeClock } from '../support/fixtures';
import { blobContents, content, md5File, tmpDir } from '../support/fs';
import { makeSite } from '../support/site';

describe('kept states and undo', () => {
  it('lists what restores kept, undoes the last one (and the undo), deletes on request; knows which backup the live Data.fs is', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root, { files: 2 });
    const dep = await discoverDeployment(root);
    const clock = fakeClock();
    const [b1] = await backupDeployment(dep, 'backup', { now: clock.now });
    const first = { fs: md5File(s.file), blobs: blobContents(s.blobDir) };
    await s.site.uploadFile('later.pdf', content('later'));
    const [b2] = await backupDeployment(dep, 'backup', { now: clock.now });
    await s.site.addDocument('not backed up');
    await s.site.close();
    const current = { fs: md5File(s.file), blobs: blobContents(s.blobDir) };

    let live = await liveGenerations(dep, await listDeployment(dep));
    assert.equal(live.get('main'), undefined, 'the live Data.fs has a transaction no backup holds');
    assert.deepEqual(await listKept(dep), []);
    await rejectsWith(undoRestore(dep), 'NOT_FOUND');

    await restoreDeployment(dep, { date: b1!.filestorage.stamp, now: clock.now, incremental: false });
    assert.equal(md5File(s.file), first.fs);
    live = await liveGenerations(dep, await listDeployment(dep));
    assert.equal(live.get('main'), b1!.filestorage.stamp, 'the live Data.fs is the first backup');
    const kept = await listKept(dep);
    assert.equal(kept.length, 1);
    assert.equal(kept[0]!.storages.length, 1);
    const k = kept[0]!.storages[0]!;
    assert.ok(k.file && k.blobDir, JSON.stringify(k));
    assert.equal(md5File(k.file!), current.fs, 'the kept Data.fs is the state the restore replaced');
    assert.ok(kept[0]!.bytes > fs.statSync(k.file!).size);

    // Undo: the replaced state is back, byte for byte, and what the undo replaced is kept in turn.
    const u = await undoRestore(dep, { now: clock.now });
    assert.equal(u.stamp, kept[0]!.stamp);
    assert.equal(md5File(s.file), current.fs);
    assert.deepEqual(blobContents(s.blobDir), current.blobs);
    assert.ok(u.removed.includes(k.file!) && !fs.existsSync(k.file!), 'the kept copies used are gone');
    const after = await listKept(dep);
    assert.equal(after.length, 1);
    assert.notEqual(after[0]!.stamp, kept[0]!.stamp);
    assert.equal(md5File(after[0]!.storages[0]!.file!), first.fs, 'the undo kept the restored state: it can be undone');
    await undoRestore(dep, { now: clock.now });
    assert.equal(md5File(s.file), first.fs);
    assert.equal((await liveGenerations(dep, await listDeployment(dep))).get('main'), b1!.filestorage.stamp);
    assert.notEqual(b2, undefined);

    // Delete: the kept states go; the live files and the backups stay.
    assert.equal((await listKept(dep)).length, 1);
    const removed = await deleteKept(dep);
    assert.ok(removed.length >= 2);
    assert.deepEqual(await listKept(dep), []);
    assert.equal(md5File(s.file), first.fs);
    assert.deepEqual(
      fs.readdirSync(path.dirname(s.file)).filter((n) => n.includes('before-restore')),
      [],
    );
  });

  it('a link named like a kept state is not listed and not deleted', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root);
    await s.site.close();
    const dep = await discoverDeployment(root);
    const victim = path.join(tmpDir(t), 'precious');
    fs.writeFileSync(victim, 'x');
    fs.symlinkSync(victim, `${s.file}.before-restore-2026-01-01-00-00-00`);
    assert.deepEqual(await listKept(dep), []);
    await deleteKept(dep);
    assert.ok(fs.existsSync(victim));
  });
});

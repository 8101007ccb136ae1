/**
 * Leftover cleanup of a deployment backup in a shared folder: when the
 * repository and blob backup folders are sticky and world-writable (like
 * /tmp), `.plone-backup-*` names planted there by another user (a folder of
 * theirs, a link to elsewhere) are left alone, and nothing they point at is
 * touched; the backup itself still works.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { backupDeployment, discoverDeployment, foldersFor } from '../../src/engine/internal';
import { fakeClock } from '../support/fixtures';
import { snapshot, tmpDir } from '../support/fs';
import { makeSite } from '../support/site';
import { nth } from '../support/must';

const root = process.getuid?.() === 0;
const OTHER_UID = 4321;

function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(r.stdout);
}

describe('cleanup in a shared backup folder', () => {
  it('leaves planted temps (another uid, a link elsewhere) and what they point at', { skip: !root && 'needs root (chown)' }, async (t) => {
    const dir = tmpDir(t);
    const s = await makeSite(t, dir, { docs: 2, files: 2 });
    const dep = await discoverDeployment(dir);
    const clock = fakeClock();
    await backupDeployment(dep, 'backup', { now: clock.now });
    const elsewhere = path.join(dir, 'elsewhere');
    fs.mkdirSync(elsewhere);
    fs.writeFileSync(path.join(elsewhere, 'precious'), 'keep me');
    const { repo, blobs } = foldersFor(nth(dep.storages, 0), 'backup');
    const planted: string[] = [];
    for (const folder of [repo, blobs]) {
      fs.chmodSync(folder, 0o1777);
      const pid = deadPid();
      const theirs = path.join(folder, `.plone-backup-blobstorage.${pid}.deadbeef.gen`);
      fs.mkdirSync(theirs);
      fs.writeFileSync(path.join(theirs, 'file'), 'theirs');
      fs.chownSync(path.join(theirs, 'file'), OTHER_UID, OTHER_UID);
      fs.chownSync(theirs, OTHER_UID, OTHER_UID);
      const link = path.join(folder, `.plone-backup-Data.fs.${pid}.deadbef0.tmp`);
      fs.symlinkSync(elsewhere, link);
      planted.push(theirs, link);
    }
    const outside = snapshot(elsewhere);
    await s.site.addDocument('later');
    await s.site.close();
    const r = nth(await backupDeployment(dep, 'backup', { now: clock.now }), 0);
    assert.equal(r.filestorage.action, 'incremental');
    for (const p of planted) assert.ok(fs.lstatSync(p, { throwIfNoEntry: false }), `${p} was removed`);
    assert.deepEqual(snapshot(elsewhere), outside);
  });
});

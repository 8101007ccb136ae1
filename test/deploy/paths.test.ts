/**
 * Where a deployment writes, and what of it lies outside its folder: every
 * storage's Data.fs, blob folder and six backup folders are write targets; a
 * plone-backup.json pointing backups at another site's folder or blobDir at
 * ../../.ssh names them as outside; `..foo` inside is inside, the folder
 * itself is not; a symlink inside that points out counts as outside, and paths
 * not there yet resolve through their existing parent.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { discoverDeployment, isInside, outsideOf, outsideTargets, resolveReal, writeTargets } from '../../src/engine/internal';
import { tmpDir } from '../support/fs';
import { nth } from '../support/must';

function site(root: string): void {
  fs.mkdirSync(path.join(root, 'var', 'filestorage'), { recursive: true });
  fs.mkdirSync(path.join(root, 'var', 'blobstorage'), { recursive: true });
  fs.writeFileSync(path.join(root, 'var', 'filestorage', 'Data.fs'), 'FS21');
}

describe('deployment write targets', () => {
  it("are every storage's file, blobDir and backup folders", async (t) => {
    const root = tmpDir(t);
    site(root);
    fs.writeFileSync(path.join(root, 'var', 'filestorage', 'catalog.fs'), 'FS21');
    const dep = await discoverDeployment(root);
    const targets = writeTargets(dep);
    const v = (...p: string[]) => path.join(root, 'var', ...p);
    assert.deepEqual(
      targets.filter((x) => x.storage === 'main').map((x) => [x.role, x.path]),
      [
        ['file', v('filestorage', 'Data.fs')],
        ['blobDir', v('blobstorage')],
        ['backups', v('backups')],
        ['blobBackups', v('blobstoragebackups')],
        ['snapshots', v('snapshotbackups')],
        ['blobSnapshots', v('blobstoragesnapshots')],
        ['zips', v('zipbackups')],
        ['blobZips', v('blobstoragezips')],
      ],
    );
    // catalog has no blob folder: no blobDir target.
    assert.deepEqual(
      targets.filter((x) => x.storage === 'catalog').map((x) => x.role),
      ['file', 'backups', 'blobBackups', 'snapshots', 'blobSnapshots', 'zips', 'blobZips'],
    );
    assert.deepEqual(await outsideTargets(root, dep), [], 'a buildout writes only inside its folder');
  });

  it('name what a plone-backup.json points outside the folder', async (t) => {
    const base = tmpDir(t);
    const root = path.join(base, 'site-a');
    const other = path.join(base, 'site-b', 'var', 'backups');
    fs.mkdirSync(root);
    site(root);
    fs.writeFileSync(path.join(root, 'plone-backup.json'), JSON.stringify({ keep: 1, storages: [{ name: 'main', blobDir: '../../.ssh', backups: '../site-b/var/backups' }] }));
    const dep = await discoverDeployment(root);
    const real = await resolveReal(base);
    assert.deepEqual(await outsideTargets(root, dep), [path.join(path.dirname(real), '.ssh'), path.join(real, 'site-b', 'var', 'backups')].sort());
    assert.ok(!isInside(root, other));
  });

  it('inside is strictly inside: ..foo is, the folder itself and its parent are not', () => {
    const root = path.resolve('/w/site');
    assert.equal(isInside(root, '/w/site/var/Data.fs'), true);
    assert.equal(isInside(root, '/w/site/..foo'), true);
    assert.equal(isInside(root, '/w/site'), false);
    assert.equal(isInside(root, '/w/site/'), false);
    assert.equal(isInside(root, '/w'), false);
    assert.equal(isInside(root, '/w/site2/var'), false);
    assert.equal(isInside(root, '/w/site/var/../../other'), false);
    assert.deepEqual(outsideOf(root, ['/w/site/var', '/b/x', '/a/y', '/b/x/', '/w/site']), ['/a/y', '/b/x', '/w/site']);
  });

  it('a symlink inside that points out counts as outside, also for paths not there yet', async (t) => {
    const base = tmpDir(t);
    const root = path.join(base, 'site');
    const elsewhere = path.join(base, 'elsewhere');
    fs.mkdirSync(elsewhere);
    fs.mkdirSync(root);
    site(root);
    // var/backups does not exist; its parent var/ links out.
    fs.renameSync(path.join(root, 'var'), path.join(elsewhere, 'var'));
    fs.symlinkSync(path.join(elsewhere, 'var'), path.join(root, 'var'));
    const dep = await discoverDeployment(root);
    assert.equal(nth(dep.storages, 0).dirs.backups, path.join(root, 'var', 'backups'), 'discovery names it inside');
    const out = await outsideTargets(root, dep);
    const realElse = await resolveReal(elsewhere);
    assert.ok(out.includes(path.join(realElse, 'var', 'backups')), out.join('\n'));
    assert.ok(out.includes(path.join(realElse, 'var', 'filestorage', 'Data.fs')), out.join('\n'));
    assert.equal(out.length, 8);
    // A workspace folder reached through a link is still itself: nothing is outside.
    const alias = path.join(base, 'alias');
    fs.symlinkSync(elsewhere, alias);
    const dep2 = await discoverDeployment(alias);
    assert.deepEqual(await outsideTargets(alias, dep2), []);
  });

  it('resolveReal keeps a path whose prefixes cannot be resolved as it is', async () => {
    const fail = async () => {
      throw new Error('ENOENT');
    };
    assert.equal(await resolveReal('/nowhere/at/all', fail), path.resolve('/nowhere/at/all'));
    const fake = async (p: string) => {
      if (p === path.resolve('/a')) return path.resolve('/real/a');
      throw new Error('ENOENT');
    };
    assert.equal(await resolveReal('/a/b/c', fake), path.resolve('/real/a/b/c'));
  });
});

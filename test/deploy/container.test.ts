/**
 * Discovery finds the official plone-backend image's layout: the instance in
 * /app (etc/zope.conf naming $INSTANCE/var/filestorage/Data.fs and
 * $INSTANCE/var/blobstorage, /app/var a link to /data) and the /data volume,
 * seen from the container's root (the image's zope.conf, its absolute paths and
 * links taken inside that root), from a sidecar that only mounts the volume,
 * and from the volume itself. A temp folder stands for the container's `/`.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { discoverDeployment, findDeployments, FileStorageWriter } from '../../src/engine/internal';
import { noHang, rejectsWith } from '../support/assert';
import { IMAGE_ZOPE_CONF, containerRoot } from '../support/container';
import { snapshot, type TestHooks } from '../support/fs';
import { nth } from '../support/must';

async function emptyStorage(file: string): Promise<void> {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const w = await FileStorageWriter.create(file);
  await w.close();
}

/** The layout with an empty Data.fs. */
async function container(t: TestHooks, zopeConf = IMAGE_ZOPE_CONF, link = '/data'): Promise<{ root: string; data: string }> {
  const c = containerRoot(t, { zopeConf, link });
  await emptyStorage(c.file);
  return c;
}

describe('plone-backend container discovery', () => {
  it("reads the image's zope.conf from the container's root, its /app/var link followed into that root's /data", async (t) => {
    const { root, data } = await container(t);
    const before = snapshot(root);
    const dep = await discoverDeployment(root);
    assert.equal(dep.source, 'zconfig');
    assert.equal(dep.configFile, path.join(root, 'app', 'etc', 'zope.conf'));
    assert.equal(dep.varDir, data);
    assert.deepEqual(
      dep.storages.map((s) => [s.name, s.file, s.blobDir, s.dirs.backups, s.dirs.blobBackups]),
      [['main', path.join(data, 'filestorage', 'Data.fs'), path.join(data, 'blobstorage'), path.join(data, 'backups'), path.join(data, 'blobstoragebackups')]],
    );
    // --backup-dir (another volume) moves the backups, the storages stay.
    const moved = await discoverDeployment(root, { backupRoot: path.join(root, 'backups') });
    assert.equal(nth(moved.storages, 0).dirs.backups, path.join(root, 'backups', 'backups'));
    assert.equal(nth(moved.storages, 0).file, path.join(data, 'filestorage', 'Data.fs'));
    assert.deepEqual(snapshot(root), before);
  });

  it("takes every absolute path of the image's zope.conf inside the root: a derived image's catalog mount and a %include by absolute path", async (t) => {
    const conf = `${IMAGE_ZOPE_CONF}%include /app/etc/zope.conf.d/catalog.conf\n`;
    const { root, data } = await container(t, conf);
    fs.mkdirSync(path.join(root, 'app', 'etc', 'zope.conf.d'));
    fs.writeFileSync(
      path.join(root, 'app', 'etc', 'zope.conf.d', 'catalog.conf'),
      '<zodb_db catalog>\n  <filestorage>\n    path /app/var/filestorage/catalog.fs\n    blob-dir /data/blobstorage_catalog\n  </filestorage>\n  mount-point /Plone/portal_catalog\n</zodb_db>\n',
    );
    await emptyStorage(path.join(data, 'filestorage', 'catalog.fs'));
    const dep = await discoverDeployment(root);
    assert.deepEqual(
      dep.storages.map((s) => [s.name, s.file, s.blobDir, s.dirs.backups]),
      [
        ['main', path.join(data, 'filestorage', 'Data.fs'), path.join(data, 'blobstorage'), path.join(data, 'backups')],
        ['catalog', path.join(data, 'filestorage', 'catalog.fs'), path.join(data, 'blobstorage_catalog'), path.join(data, 'backups_catalog')],
      ],
    );
  });

  it('a sidecar that mounts only the /data volume: /data is the var folder, from the root or from the volume itself', async (t) => {
    const { root, data } = await container(t);
    fs.rmSync(path.join(root, 'app'), { recursive: true });
    for (const dir of [root, data]) {
      const dep = await discoverDeployment(dir);
      assert.equal(dep.source, 'buildout', dir);
      assert.equal(dep.varDir, data, dir);
      assert.deepEqual(
        dep.storages.map((s) => [s.name, s.file, s.blobDir, s.dirs.backups, s.dirs.snapshots]),
        [['main', path.join(data, 'filestorage', 'Data.fs'), path.join(data, 'blobstorage'), path.join(data, 'backups'), path.join(data, 'snapshotbackups')]],
        dir,
      );
    }
    // The extension, opened on a folder holding the volume (a docker-compose project's ./data), finds it below.
    assert.deepEqual(await findDeployments(root), [data]);
  });

  it('a volume whose Data.fs was lost is still found by its filestorage/ folder and its backups (beside it or under --backup-dir), so that it can be restored', async (t) => {
    const { root, data } = await container(t);
    fs.rmSync(path.join(root, 'app'), { recursive: true });
    fs.rmSync(path.join(data, 'filestorage', 'Data.fs'));
    fs.rmSync(path.join(data, 'blobstorage'), { recursive: true });
    await rejectsWith(discoverDeployment(data), 'SOURCE_MISSING');
    fs.mkdirSync(path.join(data, 'backups'));
    fs.mkdirSync(path.join(data, 'blobstoragebackups'));
    let dep = await discoverDeployment(data);
    assert.deepEqual([nth(dep.storages, 0).file, nth(dep.storages, 0).blobDir], [path.join(data, 'filestorage', 'Data.fs'), path.join(data, 'blobstorage')]);
    // The backups on a volume of their own.
    const other = path.join(root, 'backup-volume');
    fs.renameSync(path.join(data, 'backups'), path.join(root, 'moved'));
    fs.renameSync(path.join(data, 'blobstoragebackups'), path.join(root, 'moved-blobs'));
    await rejectsWith(discoverDeployment(data), 'SOURCE_MISSING');
    fs.mkdirSync(other);
    fs.renameSync(path.join(root, 'moved'), path.join(other, 'backups'));
    fs.renameSync(path.join(root, 'moved-blobs'), path.join(other, 'blobstoragebackups'));
    dep = await discoverDeployment(data, { backupRoot: other });
    assert.deepEqual([nth(dep.storages, 0).blobDir, nth(dep.storages, 0).dirs.backups], [path.join(data, 'blobstorage'), path.join(other, 'backups')]);
    // A folder that merely has a backups/ folder (a home folder) is no site.
    fs.rmSync(path.join(data, 'filestorage'), { recursive: true });
    await rejectsWith(discoverDeployment(data, { backupRoot: other }), 'SOURCE_MISSING');
  });

  it("an image configured for ZEO or RelStorage (a zope.conf with no filestorage) falls back to /data's own Data.fs, and without one finds nothing", async (t) => {
    const zeo =
      '%define INSTANCE /app\n<zodb_db main>\n  <zeoclient>\n    server $(ZEO_ADDRESS)\n    blob-dir $INSTANCE/var/blobstorage\n  </zeoclient>\n  mount-point /\n</zodb_db>\n';
    const { root, data } = await container(t, zeo);
    const dep = await discoverDeployment(root);
    assert.equal(dep.source, 'buildout');
    assert.equal(nth(dep.storages, 0).file, path.join(data, 'filestorage', 'Data.fs'));
    fs.rmSync(path.join(data, 'filestorage'), { recursive: true });
    const e = await rejectsWith(discoverDeployment(root), 'SOURCE_MISSING');
    assert.match(e.hint ?? '', /filestorage\/Data\.fs/);
  });

  it('links are followed inside the root only: .. stops at the root, and a link loop is given up on, never followed forever', async (t) => {
    // /app/var -> ../../../../../data: from inside the container that is /data.
    const up = await container(t, IMAGE_ZOPE_CONF, '../../../../../../data');
    assert.equal(nth((await discoverDeployment(up.root)).storages, 0).file, path.join(up.data, 'filestorage', 'Data.fs'));
    // /app/var -> /app/var: no storage there; discovery ends (taking the path as written) and says so.
    const loop = await container(t, IMAGE_ZOPE_CONF, '/app/var');
    const dep = await noHang('discovery through a link loop', () => discoverDeployment(loop.root));
    assert.ok(nth(dep.storages, 0).file.startsWith(loop.root + path.sep), nth(dep.storages, 0).file);
    assert.notEqual(nth(dep.storages, 0).file, path.join(loop.data, 'filestorage', 'Data.fs'));
  });
});

/**
 * Finding a deployment proves that every storage of a Plone site is found,
 * with its blob dir and the backup folders collective.recipe.backup would
 * use: a buildout's var/ (with an extra catalog.fs), zope.conf (%define,
 * several <zodb_db> mounts, <blobstorage> around <filestorage>, blob-dir on
 * the filestorage, %include), zeo.conf and plone-backup.json; and that a broken config
 * or a folder without a site fails with a typed error and changes nothing.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DEFAULT_SETTINGS, discoverDeployment, findDeployments, FileStorageWriter, MAX_INCLUDES, MAX_TOTAL, MAX_VALUE, parseZConfig } from '../../src/engine/internal';
import { rejectsWith } from '../support/assert';
import { snapshot, tmpDir } from '../support/fs';
import { execFileSync } from 'node:child_process';
import { nth, take } from '../support/must';

async function emptyStorage(file: string): Promise<void> {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const w = await FileStorageWriter.create(file);
  await w.close();
}

describe('deployment discovery', () => {
  it('finds a buildout layout with an extra catalog storage', async (t) => {
    const root = tmpDir(t);
    const v = path.join(root, 'var');
    await emptyStorage(path.join(v, 'filestorage', 'Data.fs'));
    await emptyStorage(path.join(v, 'filestorage', 'catalog.fs'));
    fs.mkdirSync(path.join(v, 'blobstorage'));
    fs.mkdirSync(path.join(v, 'blobstorage_catalog'));
    fs.writeFileSync(path.join(v, 'filestorage', 'Data.fs.index'), ''); // not a storage
    const dep = await discoverDeployment(root);
    assert.equal(dep.source, 'buildout');
    assert.equal(dep.varDir, v);
    assert.deepEqual(
      dep.storages.map((s) => [s.name, s.file, s.blobDir]),
      [
        ['main', path.join(v, 'filestorage', 'Data.fs'), path.join(v, 'blobstorage')],
        ['catalog', path.join(v, 'filestorage', 'catalog.fs'), path.join(v, 'blobstorage_catalog')],
      ],
    );
    assert.deepEqual(nth(dep.storages, 0).dirs, {
      backups: path.join(v, 'backups'),
      blobBackups: path.join(v, 'blobstoragebackups'),
      snapshots: path.join(v, 'snapshotbackups'),
      blobSnapshots: path.join(v, 'blobstoragesnapshots'),
      zips: path.join(v, 'zipbackups'),
      blobZips: path.join(v, 'blobstoragezips'),
    });
    assert.deepEqual(nth(dep.storages, 1).dirs, {
      backups: path.join(v, 'backups_catalog'),
      blobBackups: path.join(v, 'blobstoragebackups_catalog'),
      snapshots: path.join(v, 'snapshotbackups_catalog'),
      blobSnapshots: path.join(v, 'blobstoragesnapshots_catalog'),
      zips: path.join(v, 'zipbackups_catalog'),
      blobZips: path.join(v, 'blobstoragezips_catalog'),
    });
    assert.deepEqual(dep.settings, DEFAULT_SETTINGS);
    assert.deepEqual(
      { keep: dep.settings.keep, keepSnapshots: dep.settings.keepSnapshots, keepZips: dep.settings.keepZips, gzip: dep.settings.gzip, quick: dep.settings.quick },
      { keep: 2, keepSnapshots: 2, keepZips: 1, gzip: true, quick: true },
    );
    // --backup-dir moves every backup folder; --keep overrides the setting.
    const moved = await discoverDeployment(root, { backupRoot: 'elsewhere', keep: 5 });
    assert.equal(nth(moved.storages, 1).dirs.backups, path.join(root, 'elsewhere', 'backups_catalog'));
    assert.equal(moved.settings.keep, 5);
    // A storage without a blob dir has none.
    fs.rmSync(path.join(v, 'blobstorage_catalog'), { recursive: true });
    assert.equal(nth((await discoverDeployment(root)).storages, 1).blobDir, undefined);
  });

  it('reads zope.conf: %define, several <zodb_db> mounts, <blobstorage> around <filestorage>, blob-dir on a filestorage', async (t) => {
    const root = tmpDir(t);
    const site = path.join(root, 'srv');
    fs.mkdirSync(path.join(root, 'parts', 'instance', 'etc'), { recursive: true });
    fs.writeFileSync(
      path.join(root, 'parts', 'instance', 'etc', 'zope.conf'),
      `%define INSTANCEHOME ${root}/parts/instance
instancehome $INSTANCEHOME
%define CLIENTHOME ${site}/var
clienthome $CLIENTHOME
%import plone.recipe.zope2instance
debug-mode off
<environment>
    CHAMELEON_CACHE /tmp/cache
</environment>

<zodb_db main>
    # Main database
    cache-size 30000
    # Blob-enabled FileStorage database
    <blobstorage>
      blob-dir $CLIENTHOME/blobstorage
      # FileStorage database
      <filestorage>
        path $CLIENTHOME/filestorage/Data.fs
      </filestorage>
    </blobstorage>
    mount-point /
</zodb_db>

<zodb_db catalog>
    cache-size 100000
    <filestorage>
      path \${CLIENTHOME}/filestorage/catalog.fs
      blob-dir \${CLIENTHOME}/blobstorage_catalog
    </filestorage>
    mount-point /Plone/portal_catalog
    container-class Products.CMFPlone.CatalogTool.CatalogTool
</zodb_db>

<zodb_db temporary>
    <temporarystorage>
      name temporary storage for sessioning
    </temporarystorage>
    mount-point /temp_folder
    container-class Products.TemporaryFolder.TemporaryContainer
</zodb_db>
`,
    );
    const dep = await discoverDeployment(root);
    assert.equal(dep.source, 'zconfig');
    assert.equal(dep.configFile, path.join(root, 'parts', 'instance', 'etc', 'zope.conf'));
    assert.equal(dep.varDir, path.join(site, 'var'));
    assert.deepEqual(
      dep.storages.map((s) => [s.name, s.file, s.blobDir, s.dirs.backups, s.dirs.blobBackups]),
      [
        ['main', `${site}/var/filestorage/Data.fs`, `${site}/var/blobstorage`, `${site}/var/backups`, `${site}/var/blobstoragebackups`],
        ['catalog', `${site}/var/filestorage/catalog.fs`, `${site}/var/blobstorage_catalog`, `${site}/var/backups_catalog`, `${site}/var/blobstoragebackups_catalog`],
      ],
    );
  });

  it('reads zeo.conf with numbered storages', async (t) => {
    const root = tmpDir(t);
    fs.mkdirSync(path.join(root, 'parts', 'zeoserver', 'etc'), { recursive: true });
    fs.writeFileSync(
      path.join(root, 'parts', 'zeoserver', 'etc', 'zeo.conf'),
      `%define INSTANCE ${root}/parts/zeoserver
%define VAR ${root}/var
<zeo>
  address 8100
  read-only false
  invalidation-queue-size 100
  pid-filename $VAR/zeoserver.pid
</zeo>

<blobstorage 1>
  <filestorage 1>
    path $VAR/filestorage/Data.fs
  </filestorage>
  blob-dir $VAR/blobstorage
</blobstorage>

<filestorage catalog>
  path $VAR/filestorage/catalog.fs
</filestorage>

<eventlog>
  level info
  <logfile>
    path $VAR/log/zeoserver.log
    format %(asctime)s %(message)s
  </logfile>
</eventlog>
`,
    );
    const dep = await discoverDeployment(root);
    assert.equal(dep.source, 'zconfig');
    assert.deepEqual(
      dep.storages.map((s) => [s.name, s.file, s.blobDir]),
      [
        ['main', `${root}/var/filestorage/Data.fs`, `${root}/var/blobstorage`],
        ['catalog', `${root}/var/filestorage/catalog.fs`, undefined],
      ],
    );
    assert.equal(nth(dep.storages, 1).dirs.backups, `${root}/var/backups_catalog`);
  });

  it('follows %include: a cookiecutter-zope-instance zope.conf whose included file mounts a catalog database', async (t) => {
    const root = tmpDir(t);
    const inst = path.join(root, 'instance');
    fs.mkdirSync(path.join(inst, 'etc', 'extra'), { recursive: true });
    fs.writeFileSync(
      path.join(inst, 'etc', 'zope.conf'),
      `# This file was generated by "cookiecutter-zope-instance"
%define INSTANCEHOME ${inst}
instancehome $INSTANCEHOME
%define CLIENTHOME ${root}/var
clienthome $CLIENTHOME
<zodb_db main>
    mount-point /
    cache-size 30000
    # Blob-enabled FileStorage database
    <filestorage>
        path ${root}/var/filestorage/Data.fs
        blob-dir ${root}/var/blobstorage
        pack-keep-old false
    </filestorage>
</zodb_db>
%include extra/databases.conf
`,
    );
    // Relative to the including file; a %define of zope.conf applies in it, and it may include further.
    fs.writeFileSync(
      path.join(inst, 'etc', 'extra', 'databases.conf'),
      `<zodb_db catalog>
    %include ${path.join(inst, 'etc', 'extra', 'catalog-storage.conf')}
    mount-point /Plone/portal_catalog
</zodb_db>
`,
    );
    fs.writeFileSync(
      path.join(inst, 'etc', 'extra', 'catalog-storage.conf'),
      `<filestorage>
    path $CLIENTHOME/filestorage/catalog.fs
    blob-dir $CLIENTHOME/blobstorage_catalog
</filestorage>
`,
    );
    const dep = await discoverDeployment(root);
    assert.equal(dep.source, 'zconfig');
    assert.deepEqual(
      dep.storages.map((s) => [s.name, s.file, s.blobDir]),
      [
        ['main', `${root}/var/filestorage/Data.fs`, `${root}/var/blobstorage`],
        ['catalog', `${root}/var/filestorage/catalog.fs`, `${root}/var/blobstorage_catalog`],
      ],
    );

    // A missing, looping or remote include is a typed error naming the including file and line.
    const extra = path.join(inst, 'etc', 'extra', 'databases.conf');
    fs.writeFileSync(extra, '\n%include nowhere.conf\n');
    let e = await rejectsWith(discoverDeployment(root), 'USAGE');
    assert.match(e.message, /databases\.conf line 2 .*nowhere\.conf does not exist/);
    fs.writeFileSync(extra, '%include ../zope.conf\n');
    e = await rejectsWith(discoverDeployment(root), 'USAGE');
    assert.match(e.message, /databases\.conf line 1 .*includes itself/);
    fs.writeFileSync(extra, '%include https://example.org/db.conf\n');
    e = await rejectsWith(discoverDeployment(root), 'USAGE');
    assert.match(e.message, /not a local file/);
    fs.writeFileSync(extra, '%include /dev/stdin\n');
    e = await rejectsWith(discoverDeployment(root), 'USAGE');
    assert.match(e.message, /not a regular file/);
    // An included file cannot close a section it did not open.
    fs.writeFileSync(extra, '</zodb_db>\n');
    e = await rejectsWith(discoverDeployment(root), 'USAGE');
    assert.match(e.message, /databases\.conf line 1 .*closes nothing open/);
  });

  it('a broken zope.conf is a typed error naming the file and line', async (t) => {
    const root = tmpDir(t);
    fs.writeFileSync(path.join(root, 'zope.conf'), '<zodb_db main>\n  <filestorage>\n    path $NOWHERE/Data.fs\n  </filestorage>\n</zodb_db>\n');
    const e = await rejectsWith(discoverDeployment(root), 'USAGE');
    assert.match(e.message, /zope\.conf line 3/);
    assert.match(e.message, /NOWHERE/);
  });

  it('reads plone-backup.json: settings, several storages, explicit folders', async (t) => {
    const root = tmpDir(t);
    // A buildout layout is there too: the config file wins.
    await emptyStorage(path.join(root, 'var', 'filestorage', 'Data.fs'));
    fs.writeFileSync(
      path.join(root, 'plone-backup.json'),
      JSON.stringify({
        var: 'data',
        keep: 3,
        keepSnapshots: 4,
        gzip: false,
        quick: false,
        storages: [{ name: 'main', file: 'data/Data.fs', blobDir: 'data/blobs', backups: '/backups/plone' }, { name: 'catalog' }],
      }),
    );
    const dep = await discoverDeployment(root);
    assert.equal(dep.source, 'config');
    assert.equal(dep.configFile, path.join(root, 'plone-backup.json'));
    assert.deepEqual(dep.settings, { ...DEFAULT_SETTINGS, keep: 3, keepSnapshots: 4, keepZips: 1, gzip: false, quick: false });
    const [main, cat] = take(dep.storages, 2);
    assert.equal(main.file, path.join(root, 'data', 'Data.fs'));
    assert.equal(main.blobDir, path.join(root, 'data', 'blobs'));
    assert.equal(main.dirs.backups, '/backups/plone');
    assert.equal(main.dirs.blobBackups, path.join(root, 'data', 'blobstoragebackups'));
    assert.equal(cat.name, 'catalog');
    assert.equal(cat.file, path.join(root, 'data', 'filestorage', 'catalog.fs'));
    assert.equal(cat.blobDir, undefined);
    assert.equal(cat.dirs.snapshots, path.join(root, 'data', 'snapshotbackups_catalog'));
  });

  it('an invalid or unreadable plone-backup.json is a typed error and changes nothing', async (t) => {
    const root = tmpDir(t);
    await emptyStorage(path.join(root, 'var', 'filestorage', 'Data.fs'));
    const cfg = path.join(root, 'plone-backup.json');
    const cases: [string, () => void, RegExp][] = [
      ['not JSON', () => fs.writeFileSync(cfg, '{ "keep": 2, '), /not valid JSON/],
      ['not an object', () => fs.writeFileSync(cfg, '[1, 2]'), /JSON object/],
      ['bad keep', () => fs.writeFileSync(cfg, '{"keep": -1}'), /"keep" must be a whole number/],
      ['bad gzip', () => fs.writeFileSync(cfg, '{"gzip": "yes"}'), /"gzip" must be true or false/],
      ['empty storages', () => fs.writeFileSync(cfg, '{"storages": []}'), /non-empty list/],
      ['bad storage name', () => fs.writeFileSync(cfg, '{"storages": [{}, {"name": "a/b"}]}'), /storage 2 needs a "name"/],
      [
        'unreadable (a folder)',
        () => {
          fs.rmSync(cfg, { force: true });
          fs.mkdirSync(cfg);
        },
        /cannot be read/,
      ],
      [
        'unreadable (a dangling link)',
        () => {
          fs.rmSync(cfg, { recursive: true, force: true });
          fs.symlinkSync(path.join(root, 'nowhere.json'), cfg);
        },
        /cannot be read|does not exist/,
      ],
    ];
    for (const [what, make, msg] of cases) {
      make();
      const before = snapshot(root);
      const e = await rejectsWith(discoverDeployment(root), 'USAGE');
      assert.match(e.message, msg, what);
      assert.equal(e.path, cfg, what);
      assert.ok(e.message.includes(cfg), `${what}: the message names the file`);
      assert.deepEqual(snapshot(root), before, `${what}: nothing changed`);
    }
    // An explicit --config that does not exist.
    const e = await rejectsWith(discoverDeployment(root, { config: 'missing.json' }), 'USAGE');
    assert.match(e.message, /does not exist/);
  });

  it('no deployment found is SOURCE_MISSING, with a hint', async (t) => {
    const root = tmpDir(t);
    fs.mkdirSync(path.join(root, 'var', 'filestorage'), { recursive: true });
    const before = snapshot(root);
    const e = await rejectsWith(discoverDeployment(root), 'SOURCE_MISSING');
    assert.match(e.message, /No Plone deployment found/);
    assert.ok(e.hint && /--dir/.test(e.hint));
    assert.deepEqual(snapshot(root), before);
    await rejectsWith(discoverDeployment(path.join(root, 'nope')), 'SOURCE_MISSING');
    // A zope.conf without any filestorage is no deployment either.
    fs.writeFileSync(path.join(root, 'zope.conf'), '<zodb_db temporary>\n <temporarystorage>\n </temporarystorage>\n</zodb_db>\n');
    await rejectsWith(discoverDeployment(root), 'SOURCE_MISSING');
  });

  // A configuration is read whole, by discovery, each time the extension opens
  // a folder: no file there may hang it, fill its memory or keep it busy.
  for (const kind of ['FIFO', 'link to /dev/zero'] as const) {
    it(`a plone-backup.json that is a ${kind} is USAGE at once, never waited on or read whole`, { timeout: 10_000 }, async (t) => {
      const root = tmpDir(t);
      const cfg = path.join(root, 'plone-backup.json');
      if (kind === 'FIFO') execFileSync('mkfifo', [cfg]);
      else fs.symlinkSync('/dev/zero', cfg);
      const e = await rejectsWith(discoverDeployment(root), 'USAGE');
      assert.match(e.message, /not a regular file/);
      assert.equal(e.path, cfg);
    });
  }

  it('a plone-backup.json or zope.conf of more than 4 MiB is USAGE, not parsed', async (t) => {
    const root = tmpDir(t);
    const cfg = path.join(root, 'plone-backup.json');
    fs.writeFileSync(cfg, `{"keep": 2${' '.repeat(5 << 20)}}`);
    let e = await rejectsWith(discoverDeployment(root), 'USAGE');
    assert.match(e.message, /at most 4194304 bytes/);
    fs.rmSync(cfg);
    fs.writeFileSync(path.join(root, 'zope.conf'), `<zodb_db main>\n<filestorage>\npath Data.fs\n</filestorage>\n</zodb_db>\n${'#\n'.repeat(5 << 19)}`);
    e = await rejectsWith(discoverDeployment(root), 'USAGE');
    assert.match(e.message, /zope\.conf cannot be used: .*at most/);
  });

  it('nested %defines cannot blow up: a value is at most 64 KiB, USAGE naming file and line', async (t) => {
    const root = tmpDir(t);
    // 1.5 KB that double a 1 KiB value 28 times: 256 GiB if expanded; a7 (line 8) is the first past 64 KiB.
    const lines = [`%define a0 ${'x'.repeat(1024)}`];
    for (let i = 1; i <= 28; i++) lines.push(`%define a${i} $a${i - 1}$a${i - 1}`);
    lines.push('<zodb_db main>', '<filestorage>', 'path $a28/Data.fs', '</filestorage>', '</zodb_db>');
    fs.writeFileSync(path.join(root, 'zope.conf'), lines.join('\n') + '\n');
    const rss0 = process.memoryUsage().rss;
    const e = await rejectsWith(discoverDeployment(root), 'USAGE');
    assert.ok(process.memoryUsage().rss - rss0 < 100 * 2 ** 20);
    assert.match(e.message, /zope\.conf line 8 /);
    assert.match(e.message, new RegExp(`past ${MAX_VALUE} characters`));
    assert.equal(e.position, 8);
    // Just under the cap is fine.
    const ok = parseZConfig(`%define a ${'y'.repeat(MAX_VALUE / 2)}\n%define b $a$a\n`, 'ok.conf');
    assert.equal(ok.children.length, 0);
  });

  it('includes cannot multiply: at most MAX_INCLUDES includes and MAX_TOTAL bytes in one configuration', async (t) => {
    const root = tmpDir(t);
    // zope.conf includes a.conf 32 times, a.conf includes b.conf 32 times, b.conf includes c.conf 32 times:
    // 32,768 reads of c.conf from 3 small files.
    fs.writeFileSync(path.join(root, 'zope.conf'), '%include a.conf\n'.repeat(32));
    fs.writeFileSync(path.join(root, 'a.conf'), '%include b.conf\n'.repeat(32));
    fs.writeFileSync(path.join(root, 'b.conf'), '%include c.conf\n'.repeat(32));
    fs.writeFileSync(path.join(root, 'c.conf'), `# ${'z'.repeat(2048)}\n`);
    let e = await rejectsWith(discoverDeployment(root), 'USAGE');
    assert.match(e.message, new RegExp(`more than ${MAX_INCLUDES} includes`));
    assert.match(e.message, /b\.conf line \d+/);
    // Fewer, larger includes: the total is capped.
    fs.writeFileSync(path.join(root, 'zope.conf'), '%include a.conf\n'.repeat(16));
    fs.writeFileSync(path.join(root, 'a.conf'), '%include c.conf\n'.repeat(12));
    fs.writeFileSync(path.join(root, 'c.conf'), `# ${'z'.repeat(100_000)}\n`);
    e = await rejectsWith(discoverDeployment(root), 'USAGE');
    assert.match(e.message, new RegExp(`more than ${MAX_TOTAL} bytes`));
  });
});

describe('deployments below a folder', () => {
  it("finds a cookieplone site in backend/instance and several sites in one repository, skipping node_modules, hidden folders and the sites' own subfolders", async (t) => {
    const root = tmpDir(t);
    const mk = (rel: string, content = '') => {
      fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
      fs.writeFileSync(path.join(root, rel), content);
    };
    mk('backend/instance/var/filestorage/Data.fs');
    mk('backend/instance/etc/zope.conf');
    mk('sites/two/buildout.cfg', '[buildout]\nparts =\n');
    mk('node_modules/pkg/var/filestorage/Data.fs');
    mk('.git/x/plone-backup.json', '{}');
    mk('a/b/c/d/plone-backup.json', '{}');
    assert.deepEqual(await findDeployments(root), [path.join(root, 'backend', 'instance'), path.join(root, 'sites', 'two')]);
    assert.deepEqual(await findDeployments(root, { depth: 4 }), [path.join(root, 'backend', 'instance'), path.join(root, 'sites', 'two'), path.join(root, 'a', 'b', 'c', 'd')]);
    assert.deepEqual(await findDeployments(root, { maxDirs: 1 }), []);
  });
});

/**
 * A backup tool that cannot be turned against its user (issue 10): what a
 * backup folder, a manifest or a configuration written by someone else can
 * make the engine do.
 *
 *   - a blob generation's manifest naming `../../x` or `/abs/x`, or a link in
 *     a generation, is refused whole (restore and drill write nothing for it,
 *     list and check report it);
 *   - retention deletes only chains this storage wrote, whatever folder the
 *     configuration names;
 *   - a restore replaces only a FileStorage with a FileStorage, and writes
 *     blobs only into something that looks like a blobstorage;
 *   - nothing created is more readable than the source Data.fs;
 *   - a link in the live blobstorage is never followed into a backup;
 *   - a site that lost var/blobstorage gets its blobs back from a restore.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import {
  MANIFEST,
  backupDeployment,
  checkDeployment,
  discoverDeployment,
  drillDeployment,
  listDeployment,
  listGenerations,
  readOwners,
  restoreDeployment,
  OWNERS_FILE,
  type Deployment,
} from '../../src/engine/internal';
import { rejectsWith } from '../support/assert';
import { fakeClock } from '../support/fixtures';
import { blobContents, blobFiles, content, md5, snapshot, tmpDir, type TestHooks } from '../support/fs';
import { makeSite, type Site } from '../support/site';

/** The newest dir generation of a site's blob backups: its folder and its blob tree. */
async function newestGeneration(varDir: string): Promise<{ dir: string; tree: string }> {
  const gens = await listGenerations(path.join(varDir, 'blobstoragebackups'), 'blobstorage');
  const g = gens.filter((x) => x.kind === 'dir').at(-1)!;
  return { dir: g.path, tree: g.content! };
}

function editManifest(genDir: string, edit: (m: { files: [string, number][] }) => void): void {
  const file = path.join(genDir, MANIFEST);
  const m = JSON.parse(fs.readFileSync(file, 'utf8')) as { files: [string, number][] };
  edit(m);
  fs.writeFileSync(file, JSON.stringify(m));
}

/** Every file and folder under `dir` with its permission bits (relative path -> mode). */
function modes(dir: string): Record<string, number> {
  const out: Record<string, number> = {};
  const walk = (d: string, rel: string) => {
    for (const ent of fs.readdirSync(d, { withFileTypes: true })) {
      const r = rel ? `${rel}/${ent.name}` : ent.name;
      const st = fs.lstatSync(path.join(d, ent.name));
      if (st.isSymbolicLink()) continue;
      out[r] = st.mode & 0o777;
      if (st.isDirectory()) walk(path.join(d, ent.name), r);
    }
  };
  walk(dir, '');
  return out;
}

/** A site with one full backup in the recipe's tree layout (the pool's manifests: blobpool.test.ts), closed (a restore may run). */
async function backedUpSite(t: TestHooks, root: string): Promise<{ s: Site; dep: Deployment }> {
  const s = await makeSite(t, root);
  const dep = await discoverDeployment(root);
  dep.settings.blobFormat = 'dir';
  await backupDeployment(dep, 'fullbackup', { now: fakeClock().now });
  await s.site.close();
  return { s, dep };
}

/** Replaces the first blob file of `tree` by a link to a private file of root's; returns its relative path. */
function linkToSecret(root: string, tree: string): string {
  const secret = path.join(root, 'secret.txt');
  fs.writeFileSync(secret, 'root only', { mode: 0o600 });
  const victim = blobFiles(tree)[0]!;
  fs.rmSync(path.join(tree, victim));
  fs.symlinkSync(secret, path.join(tree, victim));
  return victim;
}

describe('security: manifests and links in blob generations', () => {
  it('a manifest entry leaving the tree is refused: restore and drill create nothing, check reports it', async (t) => {
    const root = tmpDir(t);
    const { s, dep } = await backedUpSite(t, root);
    const { dir, tree } = await newestGeneration(s.varDir);
    // A file the traversal would copy, and the entries that reach it from the tree.
    const outside = path.join(root, 'pwned.blob');
    const abs = path.join(root, 'abs-target.blob');
    fs.writeFileSync(path.join(tree, 'payload.blob'), 'attacker');
    editManifest(dir, (m) => {
      m.files.push(['../../../../pwned.blob', 8], [abs, 8]);
    });
    const live = snapshot(s.varDir, { skip: (r) => r.startsWith('blobstoragebackups') });
    await rejectsWith(restoreDeployment(dep, {}), 'MANIFEST_BAD');
    assert.deepEqual(snapshot(s.varDir, { skip: (r) => r.startsWith('blobstoragebackups') }), live, 'the live site is unchanged');
    assert.ok(!fs.existsSync(outside) && !fs.existsSync(abs), 'nothing created outside');

    const drilled = await drillDeployment(dep).catch((e: Error) => e);
    assert.ok(drilled instanceof Error || drilled.every((r) => !r.ok), 'the drill fails on it');
    assert.ok(!fs.existsSync(outside) && !fs.existsSync(abs), 'the drill created nothing outside');

    const [view] = await listDeployment(dep);
    const gen = view!.groups[0]!.chains[0]!.full;
    assert.equal(gen.blob.status, 'unsafe');
    const findings = await checkDeployment(dep);
    assert.ok(
      findings.some((f) => f.code === 'GENERATION_UNSAFE' && f.severity === 'error'),
      JSON.stringify(findings.map((f) => f.code)),
    );
  });

  it('a manifest that is no JSON object of ours, or a link, is refused whole', async (t) => {
    const root = tmpDir(t);
    const { s, dep } = await backedUpSite(t, root);
    const { dir } = await newestGeneration(s.varDir);
    const file = path.join(dir, MANIFEST);
    const good = fs.readFileSync(file, 'utf8');
    for (const bad of ['[]', '{"version":1}', good.replace('"layout":"bushy"', '"layout":"x"'), good.replace(/"files":\[\[/, '"files":[["0x00//0x01.blob",1],[')]) {
      fs.writeFileSync(file, bad);
      await rejectsWith(restoreDeployment(dep, {}), 'MANIFEST_BAD');
    }
    fs.writeFileSync(path.join(root, 'elsewhere.json'), good);
    fs.rmSync(file);
    fs.symlinkSync(path.join(root, 'elsewhere.json'), file);
    await rejectsWith(restoreDeployment(dep, {}), 'MANIFEST_BAD');
  });

  it('a link in a generation never lands in the live blobstorage (hard link or copy)', async (t) => {
    const root = tmpDir(t);
    const { s, dep } = await backedUpSite(t, root);
    const { tree } = await newestGeneration(s.varDir);
    const victim = linkToSecret(root, tree);
    const before = snapshot(s.blobDir);
    for (const blobMode of ['link', 'copy'] as const) {
      // The live Data.fs is the backed-up state: make it a full restore.
      await rejectsWith(restoreDeployment(dep, { blobMode, incremental: false }), 'UNSAFE');
      assert.deepEqual(snapshot(s.blobDir), before, `${blobMode}: the live blobstorage is unchanged`);
    }
    // A link as a folder of the tree: the same.
    fs.rmSync(path.join(tree, victim));
    const folder = path.join(tree, path.dirname(victim));
    const moved = path.join(root, 'moved-folder');
    fs.renameSync(folder, moved);
    fs.symlinkSync(moved, folder);
    await rejectsWith(restoreDeployment(dep, { incremental: false }), 'UNSAFE');
    assert.deepEqual(snapshot(s.blobDir), before);
  });

  it('a generation with a link is not linked from by the next backup', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root);
    const dep = await discoverDeployment(root);
    dep.settings.blobFormat = 'dir';
    const clock = fakeClock();
    await backupDeployment(dep, 'fullbackup', { now: clock.now });
    const { tree } = await newestGeneration(s.varDir);
    const victim = linkToSecret(root, tree);
    await s.site.uploadFile('more.pdf', content('more'));
    await backupDeployment(dep, 'backup', { now: clock.now });
    const next = await newestGeneration(s.varDir);
    assert.notEqual(next.tree, tree);
    assert.ok(!fs.lstatSync(path.join(next.tree, victim)).isSymbolicLink(), 'the new generation holds the real file');
    assert.deepEqual(blobContents(next.tree)[victim], blobContents(s.blobDir)[victim]);
  });
});

describe('security: paths a configuration names', () => {
  it("retention never deletes another site's chains, whatever the configuration says", async (t) => {
    const root = tmpDir(t);
    const a = await makeSite(t, path.join(root, 'a'));
    const depA = await discoverDeployment(a.root, { keep: 5 });
    const clock = fakeClock('2026-03-01-10-00-00', 3600);
    for (let i = 0; i < 3; i++) {
      await a.site.addDocument(`a${i}`);
      await backupDeployment(depA, 'fullbackup', { now: clock.now });
    }
    const aBackups = snapshot(a.varDir, { skip: (r) => !r.startsWith('backups') && !r.startsWith('blobstoragebackups') });
    // Site b, in another folder, points its backup folders at a's, with keep 1.
    const b = await makeSite(t, path.join(root, 'b'));
    fs.writeFileSync(
      path.join(b.root, 'plone-backup.json'),
      JSON.stringify({ keep: 1, storages: [{ name: 'main', backups: path.join(a.varDir, 'backups'), blobBackups: path.join(a.varDir, 'blobstoragebackups') }] }),
    );
    const depB = await discoverDeployment(b.root);
    for (let i = 0; i < 3; i++) {
      await b.site.addDocument(`b${i}`);
      const [r] = await backupDeployment(depB, 'fullbackup', { now: clock.now });
      assert.equal(r!.filestorage.action, 'full');
    }
    const now = snapshot(a.varDir, { skip: (r) => !r.startsWith('backups') && !r.startsWith('blobstoragebackups') });
    for (const [rel, sum] of Object.entries(aBackups)) {
      if (rel === 'backups/.plone-backup.owners.json' || rel.startsWith('blobstoragebackups/latest')) continue;
      assert.equal(now[rel], sum, `${rel} of site a is kept`);
    }
    // b's own chains obey keep 1: exactly one of them is left.
    const bFulls = fs.readdirSync(path.join(a.varDir, 'backups')).filter((n) => /\.fsz?$/.test(n));
    assert.equal(bFulls.length, 3 + 1);
    // And a's own retention still works on its own chains.
    await a.site.addDocument('a again');
    await backupDeployment({ ...depA, settings: { ...depA.settings, keep: 1 } }, 'fullbackup', { now: clock.now });
    const left = fs.readdirSync(path.join(a.varDir, 'backups')).filter((n) => /\.fsz?$/.test(n));
    assert.equal(left.length, 2, `a keeps one chain of its own, b's one stays: ${left.join(' ')}`);
  });

  it('an owners record that is garbage, huge, a link or a FIFO counts as absent, never waited on', async (t) => {
    const repo = tmpDir(t);
    const file = path.join(repo, OWNERS_FILE);
    const elsewhere = path.join(repo, 'elsewhere.json');
    fs.writeFileSync(elsewhere, JSON.stringify({ version: 1, chains: { '2026-01-01-00-00-00': { file: '/x/Data.fs' } } }));
    const shapes: [string, () => void][] = [
      ['garbage', () => fs.writeFileSync(file, '{"version":1,"chains":{"../../x":{"file":1},"2026-01-01-00-00-00":{"file":"/a","first":"zz"}}}')],
      ['not JSON', () => fs.writeFileSync(file, '\u0000\u0001')],
      ['huge', () => fs.writeFileSync(file, ' '.repeat((4 << 20) + 1))],
      ['a link', () => fs.symlinkSync(elsewhere, file)],
      ['a FIFO', () => execFileSync('mkfifo', [file])],
      ['a link to /dev/zero', () => fs.symlinkSync('/dev/zero', file)],
    ];
    for (const [what, make] of shapes) {
      fs.rmSync(file, { force: true });
      make();
      assert.deepEqual([...(await readOwners(repo))], [], what);
    }
  });

  it('a restore writes blobs only into a blobstorage, and replaces only a FileStorage', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, path.join(root, 'site'));
    const dep = await discoverDeployment(s.root);
    await backupDeployment(dep, 'fullbackup', { now: fakeClock().now });
    await s.site.close();
    // blobDir pointing at a folder of the user's (~/.ssh, here under the name
    // the backups' generations carry, as an attacker would arrange it).
    const ssh = path.join(root, 'home', 'blobstorage');
    fs.mkdirSync(ssh, { recursive: true });
    fs.writeFileSync(path.join(ssh, 'authorized_keys'), 'x');
    const before = snapshot(ssh);
    const toSsh = { ...dep, storages: [{ ...dep.storages[0]!, blobDir: ssh }] };
    await rejectsWith(restoreDeployment(toSsh, { incremental: false }), 'UNSAFE');
    assert.deepEqual(snapshot(ssh), before, 'nothing written into ~/.ssh');
    // file pointing at a file that is no FileStorage.
    const rc = path.join(root, 'home', '.bashrc');
    fs.writeFileSync(rc, 'alias ls=ls\n');
    const toRc = { ...dep, storages: [{ ...dep.storages[0]!, file: rc }] };
    await rejectsWith(restoreDeployment(toRc, { incremental: false }), 'UNSAFE');
    assert.equal(fs.readFileSync(rc, 'utf8'), 'alias ls=ls\n');
  });

  it('a restore writes only a FileStorage: a piece of something else with a matching .dat is refused', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root, { files: 0 });
    fs.rmSync(s.blobDir, { recursive: true });
    await s.site.close();
    const dep = await discoverDeployment(root);
    const repo = path.join(s.varDir, 'backups');
    fs.mkdirSync(repo);
    const body = Buffer.from('#!/bin/sh\necho not a database\n');
    fs.writeFileSync(path.join(repo, '2026-01-01-00-00-00.fs'), body);
    const sum = md5(body);
    fs.writeFileSync(path.join(repo, '2026-01-01-00-00-00.dat'), `${path.join(repo, '2026-01-01-00-00-00.fs')} 0 ${body.length} ${sum}\n`);
    const before = snapshot(s.varDir, { skip: (r) => r.startsWith('backups') });
    await rejectsWith(restoreDeployment(dep, {}), 'NOT_FILESTORAGE');
    assert.deepEqual(snapshot(s.varDir, { skip: (r) => r.startsWith('backups') }), before);
  });
});

describe('security: file modes', () => {
  for (const source of [0o600, 0o640]) {
    it(`with a ${source.toString(8)} Data.fs and umask 022, nothing created is more readable`, async (t) => {
      const old = process.umask(0o022);
      t.after(() => void process.umask(old));
      const root = tmpDir(t);
      const s = await makeSite(t, root);
      fs.chmodSync(s.file, source);
      const dep = await discoverDeployment(root);
      const clock = fakeClock();
      await backupDeployment(dep, 'fullbackup', { now: clock.now });
      await s.site.uploadFile('more.pdf', content('more'));
      await backupDeployment(dep, 'backup', { now: clock.now });
      await backupDeployment(dep, 'snapshot', { now: clock.now });
      await backupDeployment(dep, 'zipbackup', { now: clock.now });
      await s.site.close();
      const dirMode = source | ((source & 0o444) >> 2);
      for (const folder of ['backups', 'blobstoragebackups', 'snapshotbackups', 'blobstoragesnapshots', 'zipbackups', 'blobstoragezips']) {
        const base = path.join(s.varDir, folder);
        assert.equal(fs.statSync(base).mode & 0o777 & ~dirMode, 0, `${folder} itself`);
        for (const [rel, mode] of Object.entries(modes(base))) {
          const isDir = fs.lstatSync(path.join(base, rel)).isDirectory();
          assert.equal(mode & ~(isDir ? dirMode : source), 0, `${folder}/${rel} is ${mode.toString(8)}, wider than ${(isDir ? dirMode : source).toString(8)}`);
        }
      }
      // A restore keeps the live Data.fs's mode, also for the index.
      fs.chmodSync(s.file, source);
      await restoreDeployment(dep, { incremental: false, keepOld: false, now: clock.now });
      assert.equal(fs.statSync(s.file).mode & 0o777, source);
      assert.equal(fs.statSync(`${s.file}.index`).mode & 0o777 & ~source, 0);
    });
  }
});

describe('security: the live blobstorage', () => {
  it('a blob replaced by a link to a private file fails the backup and the zip backup, and check names it', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root);
    const dep = await discoverDeployment(root);
    const secret = path.join(root, 'shadow');
    fs.writeFileSync(secret, 'SECRET-CONTENT', { mode: 0o600 });
    const victim = blobFiles(s.blobDir)[0]!;
    fs.rmSync(path.join(s.blobDir, victim));
    fs.symlinkSync(secret, path.join(s.blobDir, victim));
    const clock = fakeClock();
    for (const kind of ['fullbackup', 'zipbackup'] as const) await rejectsWith(backupDeployment(dep, kind, { now: clock.now }), 'UNSAFE');
    const leaked = (dir: string): boolean =>
      fs.existsSync(dir) &&
      fs.readdirSync(dir, { recursive: true, withFileTypes: true }).some((e) => e.isFile() && fs.readFileSync(path.join(e.parentPath, e.name)).includes('SECRET-CONTENT'));
    for (const folder of ['backups', 'blobstoragebackups', 'zipbackups', 'blobstoragezips'])
      assert.ok(!leaked(path.join(s.varDir, folder)), `${folder} holds no copy of the secret`);
    const findings = await checkDeployment(dep);
    assert.ok(
      findings.some((f) => f.code === 'BLOB_LINK' && f.file === path.join(s.blobDir, victim)),
      JSON.stringify(findings.map((f) => f.code)),
    );
  });

  it('a site whose var/blobstorage is gone gets its blobs back from a restore', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root, { files: 3 });
    await backupDeployment(await discoverDeployment(root), 'fullbackup', { now: fakeClock().now });
    await s.site.close();
    const want = blobContents(s.blobDir);
    fs.rmSync(s.blobDir, { recursive: true });
    const dep = await discoverDeployment(root);
    assert.equal(dep.storages[0]!.blobDir, s.blobDir, 'the storage still has its blobstorage');
    const [r] = await restoreDeployment(dep, {});
    assert.ok(r!.blobFilesAdded > 0);
    assert.deepEqual(blobContents(s.blobDir), want);
  });
});

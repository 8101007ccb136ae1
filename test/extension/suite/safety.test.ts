// Issue 10 in the extension: the consent for paths outside the workspace folder,
// and command arguments that may not skip confirmations.
//
// The in-host suite cannot click a modal dialog: the questions are answered through
// the test hooks (src/extension/safety.ts), which exist only because the runner set
// PLONE_BACKUP_TEST_HOOKS=1; each answer is recorded. test/extension/ui/outside-consent.mjs
// clicks the real dialog.
//
// Runs after commands.test.ts in the same workspace, or alone (it makes its own site):
// ploneBackup.varDir pins the deployment to var/filestorage/Data.fs and var/blobstorage.
// Each test starts with no consent given, the backup folder at its default, a
// fresh folder outside the workspace, and makes the backups it needs: any one
// of them runs alone (PLONE_BACKUP_TEST_GREP) or in any order.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { SampleSite } from '../../../src/engine/internal';
import { Command } from '../../../src/extension/commands';
import { done, exec, holdSiteLock, ls, testWorkspace, type TestWorkspace } from './host';
import type { PloneBackupApi } from '../../../src/extension/extension';
import type { Confirmation } from '../../../src/extension/safety';
import { nth } from '../../support/must';

suite('Safety: consent for outside paths, arguments that skip confirmations', function () {
  this.timeout(60_000);
  let api: PloneBackupApi;
  let ws: string;
  let dataFs: string;
  let blobDir: string;
  let outside: string;
  let w: TestWorkspace;
  /** Every question asked, and how the next ones are answered. */
  let asked: Confirmation[] = [];
  let answer = false;
  const cfg = () => vscode.workspace.getConfiguration('ploneBackup');
  const outsideAsked = () => asked.filter((q) => q.kind === 'outside');

  async function setBackupDir(dir: string | undefined): Promise<void> {
    await cfg().update('backupDir', dir, vscode.ConfigurationTarget.Global);
    done(await exec(Command.refresh), 'refresh');
  }

  /** Allows `dir` as the backup folder: backs up there once, answering Allow. Forgets the asked question. */
  async function allowed(dir: string): Promise<void> {
    await setBackupDir(dir);
    await commit(`Before allowing ${path.basename(dir)}`);
    answer = true;
    done(await exec(Command.backup), `backup to ${dir}`);
    answer = false;
    asked = [];
  }

  async function commit(title: string): Promise<void> {
    const s = await SampleSite.open({ file: dataFs, blobDir });
    try {
      await s.addDocument(title);
    } finally {
      await s.close();
    }
  }

  suiteSetup(async () => {
    // A sample site of its own, whatever suite ran before.
    w = await testWorkspace('safety');
    ({ ws, dataFs, blobDir, api } = w);
    assert.ok(api.hooks, 'the test hooks are not there (PLONE_BACKUP_TEST_HOOKS=1 in the extension host?)');
    await cfg().update('varDir', 'var', vscode.ConfigurationTarget.Global);
    await setBackupDir(undefined);
    assert.deepEqual(
      nth(api.model.deployments, 0).dep!.storages.map((s) => s.name),
      ['main'],
    );
    api.hooks.confirm = (q) => {
      asked.push(q);
      return answer;
    };
  });

  setup(async () => {
    asked = [];
    answer = false;
    api.hooks.bypassArgs = true;
    await api.consent.forget();
    await setBackupDir(undefined);
    outside = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'plone-backup-outside-')));
  });

  teardown(() => {
    if (outside) fs.rmSync(outside, { recursive: true, force: true });
  });

  suiteTeardown(async () => {
    if (api?.hooks) {
      api.hooks.confirm = undefined;
      api.hooks.bypassArgs = true;
    }
    await cfg().update('varDir', undefined, vscode.ConfigurationTarget.Global);
    await cfg().update('backupDir', undefined, vscode.ConfigurationTarget.Global);
    await api?.consent.forget();
    await exec(Command.refresh);
    w?.dispose();
  });

  test('everything inside the workspace folder: Back Up Now asks nothing', async () => {
    await commit('Inside');
    const r = done(await exec<{ filestorage: { action: string } }[]>(Command.backup), 'backup');
    assert.notEqual(nth(r, 0).filestorage.action, 'none');
    assert.deepEqual(asked, []);
  });

  test("a pre_command from the workspace's plone-backup.json is asked for like an outside path; Cancel runs nothing", async () => {
    const cfgFile = path.join(ws, 'plone-backup.json');
    const marker = path.join(outside, 'pre-ran');
    fs.writeFileSync(cfgFile, JSON.stringify({ pre_command: `touch ${marker}` }));
    try {
      done(await exec(Command.refresh), 'refresh');
      await commit('Pre command');
      const r = await exec(Command.backup);
      assert.equal(r.status, 'declined');
      assert.equal(outsideAsked().length, 1, JSON.stringify(asked));
      const q = nth(outsideAsked(), 0);
      assert.match(q.message, /runs shell commands/);
      assert.ok(q.detail.includes(`touch ${marker}`), q.detail);
      assert.ok(!fs.existsSync(marker), 'the command ran after Cancel');
      answer = true;
      done(await exec(Command.backup), 'backup');
      assert.ok(fs.existsSync(marker), 'the command did not run after Allow');
    } finally {
      fs.rmSync(cfgFile, { force: true });
      done(await exec(Command.refresh), 'refresh');
    }
  });

  test('backup folders outside: one question naming them; Cancel writes nothing there', async () => {
    const a = path.join(outside, 'a');
    await setBackupDir(a);
    await commit('Outside A');
    const r = await exec(Command.backup);
    assert.equal(r.status, 'declined');
    assert.equal(outsideAsked().length, 1, JSON.stringify(asked));
    const q = nth(outsideAsked(), 0);
    assert.equal(q.action, 'Allow');
    assert.match(q.message, /writes and deletes outside the folder/);
    for (const d of ['backups', 'blobstoragebackups', 'snapshotbackups', 'zipbackups']) assert.ok(q.detail.includes(path.join(a, d)), `${d} not named in:\n${q.detail}`);
    assert.ok(!q.detail.includes(dataFs), 'Data.fs is inside and need not be named');
    assert.deepEqual(ls(outside), [], 'something was written outside after Cancel');
  });

  test('Allow is remembered for these paths: asked once, not again', async () => {
    const a = path.join(outside, 'a');
    await setBackupDir(a);
    answer = true;
    const r = done(await exec<{ filestorage: { action: string } }[]>(Command.backup), 'backup');
    assert.equal(nth(r, 0).filestorage.action, 'full');
    assert.ok(
      ls(path.join(a, 'backups')).some((n) => n.endsWith('.fsz')),
      'the backup is not in the allowed folder',
    );
    assert.equal(outsideAsked().length, 1);
    answer = false;
    await commit('Outside A again');
    done(await exec(Command.snapshot), 'snapshot');
    done(await exec(Command.backup), 'backup');
    assert.equal(outsideAsked().length, 1, 'asked again for the same paths');
  });

  test('listing never writes its cache outside the workspace folder', async () => {
    await setBackupDir(path.join(outside, 'a'));
    await commit('Listed from outside');
    answer = true;
    done(await exec(Command.backup), 'backup');
    const a = path.join(outside, 'a', 'backups');
    assert.ok(
      ls(a).some((n) => n.endsWith('.fsz')),
      'the backup is in the outside folder',
    );
    fs.rmSync(path.join(a, '.plone-backup-cache.json'), { force: true });
    done(await exec(Command.refresh), 'refresh');
    const views = nth(api.model.deployments, 0).views!;
    assert.ok(nth(nth(views, 0).groups, 0).chains.length > 0, 'the backups outside are listed');
    assert.ok(!ls(a).includes('.plone-backup-cache.json'), 'the listing cache was written outside the workspace');
  });

  test('a changed configuration asks again; the earlier answer still holds for its paths', async () => {
    await allowed(path.join(outside, 'a'));
    await setBackupDir(path.join(outside, 'b'));
    answer = true;
    done(await exec(Command.fullBackup), 'full backup to b');
    assert.equal(outsideAsked().length, 1);
    assert.ok(nth(outsideAsked(), 0).detail.includes(path.join(outside, 'b', 'backups')));
    assert.ok(ls(path.join(outside, 'b', 'backups')).length > 0);
    await setBackupDir(path.join(outside, 'a'));
    answer = false;
    await commit('Back to A');
    done(await exec(Command.backup), 'backup to a');
    assert.equal(outsideAsked().length, 1, 'a was allowed before');
  });

  test('a link inside the workspace that points out counts as outside', async () => {
    const target = path.join(outside, 'c');
    fs.mkdirSync(target);
    const link = path.join(ws, 'linked-backups');
    fs.rmSync(link, { force: true });
    fs.symlinkSync(target, link);
    try {
      await setBackupDir('linked-backups');
      assert.equal(nth(nth(api.model.deployments, 0).dep!.storages, 0).dirs.backups, path.join(link, 'backups'));
      const r = await exec(Command.fullBackup);
      assert.equal(r.status, 'declined');
      assert.equal(outsideAsked().length, 1);
      assert.ok(nth(outsideAsked(), 0).detail.includes(path.join(target, 'backups')), nth(outsideAsked(), 0).detail);
      assert.deepEqual(ls(target), []);
    } finally {
      fs.rmSync(link, { force: true });
    }
  });

  test('read-only actions (verify, check, drill) ask nothing, even with outside paths', async () => {
    // Backups in d, made with consent; then the consent is forgotten.
    await allowed(path.join(outside, 'd'));
    await api.consent.forget();
    done(await exec(Command.verify), 'verify');
    done(await exec(Command.check), 'check');
    const drills = done(await exec<{ ok: boolean; problems: string[] }[]>(Command.drill), 'drill');
    assert.ok(
      drills.every((d) => d.ok),
      JSON.stringify(drills),
    );
    assert.deepEqual(asked, []);
  });

  test('restore and delete ask too when paths are outside, even with yes: true; Cancel restores and deletes nothing', async () => {
    // Backups in d, made with consent; then the consent is forgotten: d is not allowed.
    await allowed(path.join(outside, 'd'));
    await api.consent.forget();
    const gen = api.tree.allGenerations().find((g) => g.group.kind === 'backup' && g.gen.full)!;
    assert.ok(gen, 'no full backup in d');
    const before = fs.statSync(dataFs);
    const r = await exec(Command.restore, { stamp: gen.gen.stamp, yes: true });
    assert.equal(r.status, 'declined');
    assert.deepEqual(
      asked.map((q) => q.kind),
      ['outside'],
    );
    const d = await exec(Command.deleteGeneration, { storage: 'main', kind: 'backup', stamp: gen.gen.stamp, yes: true });
    assert.equal(d.status, 'declined');
    assert.deepEqual(
      asked.map((q) => q.kind),
      ['outside', 'outside'],
    );
    assert.equal(fs.statSync(dataFs).ino, before.ino);
    assert.ok(ls(path.join(outside, 'd', 'backups')).some((n) => n.startsWith(gen.gen.stamp)));
  });

  test('without the test hooks, yes, force and keepOld: false skip nothing', async () => {
    await setBackupDir(undefined);
    done(await exec(Command.fullBackup), 'full backup');
    const fulls = () => api.tree.allGenerations().filter((g) => g.group.kind === 'backup' && g.gen.full);
    const newest = nth(
      fulls().sort((x, y) => y.gen.stamp.localeCompare(x.gen.stamp)),
      0,
    );
    await commit('After the full backup');
    api.hooks.bypassArgs = false;

    // yes: true does not skip the confirmation; No restores nothing.
    const before = fs.statSync(dataFs);
    const args = { folder: ws, kind: 'backup', stamp: newest.gen.stamp, yes: true, keepOld: false };
    assert.equal((await exec(Command.restore, args)).status, 'declined');
    assert.deepEqual(
      asked.map((q) => q.kind),
      ['restore'],
    );
    assert.match(nth(asked, 0).message, /^Restore /);
    assert.match(nth(asked, 0).detail, /kept beside them/, 'keepOld: false was honoured in the plan shown');
    assert.equal(fs.statSync(dataFs).ino, before.ino);
    assert.equal(fs.statSync(dataFs).size, before.size);

    // Yes: restored, and keepOld: false was ignored (the old state is kept).
    answer = true;
    const res = done(await exec<{ mode: string; keptOld: string[] }[]>(Command.restore, args), 'restore');
    assert.equal(nth(res, 0).mode, 'full');
    assert.ok(
      nth(res, 0).keptOld.some((k) => path.basename(k).startsWith('Data.fs.before-restore-')),
      `the old state was not kept: ${nth(res, 0).keptOld}`,
    );
    assert.equal(asked.length, 2);

    // force: true does not restore over a running site.
    const running = await holdSiteLock(dataFs);
    try {
      const r = await exec(Command.restore, { ...args, force: true });
      assert.equal(r.status, 'failed');
      assert.equal((r as { code: string }).code, 'SITE_RUNNING');
    } finally {
      await running.release();
    }

    // delete with yes: true asks; No deletes nothing.
    api.hooks.bypassArgs = true;
    done(await exec(Command.fullBackup), 'another full backup');
    api.hooks.bypassArgs = false;
    answer = false;
    asked = [];
    const oldest = nth(
      fulls().sort((x, y) => x.gen.stamp.localeCompare(y.gen.stamp)),
      0,
    );
    assert.ok(!oldest.newestComplete);
    const del = await exec(Command.deleteGeneration, { storage: 'main', kind: 'backup', stamp: oldest.gen.stamp, yes: true });
    assert.equal(del.status, 'declined');
    assert.deepEqual(
      asked.map((q) => q.kind),
      ['delete'],
    );
    assert.ok(ls(path.join(ws, 'var', 'backups')).some((n) => n.startsWith(oldest.gen.stamp)));
  });

  test('with the test hooks, yes: true skips the confirmation (what the other suites rely on)', async () => {
    await commit('Before the first full backup');
    done(await exec(Command.fullBackup), 'full backup');
    await commit('Before the second full backup');
    done(await exec(Command.fullBackup), 'another full backup');
    const oldest = nth(
      api.tree
        .allGenerations()
        .filter((g) => g.group.kind === 'backup' && g.gen.full)
        .sort((x, y) => x.gen.stamp.localeCompare(y.gen.stamp)),
      0,
    );
    done(await exec(Command.deleteGeneration, { storage: 'main', kind: 'backup', stamp: oldest.gen.stamp, yes: true }), 'delete');
    assert.deepEqual(asked, []);
  });
});

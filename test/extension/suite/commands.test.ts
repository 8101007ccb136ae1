// Every command, run through vscode.commands.executeCommand against a sample
// deployment made with SampleSite in the test workspace: backups appear on disk
// and in the tree, restores replace the dev database and keep the old one,
// a missing blob shows in the Problems panel, cancellation leaves nothing behind.
//
// The tests share the workspace folder but not its state: each starts from a
// fresh sample site (var/ wiped) and makes the backups it needs, so any one of
// them runs alone (PLONE_BACKUP_TEST_GREP) or in any order.
import * as assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { LIVE_SCAN_FILE, backupDeployment, discoverDeployment, isStamp, parseStamp, SampleSite } from '../../../src/engine/internal';
import { Command } from '../../../src/extension/commands';
import { done, exec, holdSiteLock, ls, testWorkspace, waitFor, type HeldLock, type TestWorkspace } from './host';
import type { PloneBackupApi } from '../../../src/extension/extension';
import type { GenerationNode, Node } from '../../../src/extension/tree';
import { blobFiles, blobPaths } from '../../support/fs';
import { nth } from '../../support/must';

/** Entries about binary files sit on a read-only report of our own scheme (src/extension/diagnostics.ts). */
const problemsOf = (file: string) => vscode.Uri.file(file).with({ scheme: 'plone-backup-problems' });

/**
 * The caches the extension writes beside the backups on its own (the piece cache, and the live
 * scan's, with its temp file, whenever its background check runs): never a backup's files, and
 * written at any moment, so the comparisons of what a backup left leave them out.
 */
const isCache = (n: string) => n === '.plone-backup-cache.json' || n.includes(LIVE_SCAN_FILE);
const temps = (dir: string) => ls(dir).filter((n) => n.startsWith('.plone-backup-') && !isCache(n));

suite('Plone Backup commands on a sample deployment', function () {
  this.timeout(60_000);
  let api: PloneBackupApi;
  let ws: string;
  let dataFs: string;
  let blobDir: string;
  let var_: string;
  let running: HeldLock | undefined;
  let w: TestWorkspace;

  const dir = (name: string) => path.join(var_, name);
  const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');
  const roots = () => api.tree.getChildren();
  const children = (n?: Node) => api.tree.getChildren(n);
  const gens = () => api.tree.allGenerations();
  // Stamps are unique within a group only (each repository picks its own).
  const gen = (stamp: string, kind = 'backup') => gens().find((g) => g.gen.stamp === stamp && g.group.kind === kind);
  const label = (n: Node) => String(api.tree.getTreeItem(n).label);
  const description = (n: Node) => String(api.tree.getTreeItem(n).description ?? '');

  /** A clean start (see TestWorkspace.fresh), with no flock holder left. */
  async function fresh(opts: { empty?: boolean } = {}): Promise<void> {
    await running?.release();
    await w.fresh(opts);
  }

  /** Runs a backup command; returns the stamp of its (first) storage's piece. */
  async function backUp(command: string = Command.backup, args?: unknown): Promise<string> {
    const res = done(await exec<{ filestorage: { action: string; stamp: string } }[]>(command, args), command);
    return nth(res, 0).filestorage.stamp;
  }

  /**
   * A fresh site with the backups the first tests make: a full backup, an
   * incremental after a new document, a second full after an upload, a
   * snapshot and a zip backup (8 transactions in all).
   */
  async function history(): Promise<{ firstFull: string; incremental: string; secondFull: string }> {
    await fresh();
    const firstFull = await backUp();
    await commit((s) => s.addDocument('Second', undefined, '/ editor'));
    const incremental = await backUp();
    await commit((s) => s.uploadFile('third.txt', Buffer.from('third')));
    const secondFull = await backUp(Command.fullBackup);
    await backUp(Command.snapshot);
    await backUp(Command.zipBackup);
    return { firstFull, incremental, secondFull };
  }

  const commit = (fn: (s: SampleSite) => Promise<unknown>): Promise<void> => w.commit(fn);

  suiteSetup(async () => {
    w = await testWorkspace('commands');
    ({ ws, dataFs, blobDir, api } = w);
    var_ = w.varDir;
  });

  suiteTeardown(async () => {
    await running?.release();
    w?.dispose();
  });

  test('an empty workspace: no deployment, an empty tree, and backing up says why not', async () => {
    await fresh({ empty: true });
    assert.ok(!fs.existsSync(dataFs));
    done(await exec(Command.refresh), 'refresh');
    assert.equal(api.model.deployments.length, 0);
    assert.deepEqual(roots(), [], 'the welcome view shows when the tree is empty');
    const r = await exec(Command.backup);
    assert.equal(r.status, 'failed');
    assert.equal((r as { code: string }).code, 'NOT_FOUND');
  });

  test('a sample site is discovered; with no backup yet the tree is empty (welcome view)', async () => {
    await fresh();
    assert.equal(api.model.deployments.length, 1);
    assert.equal(nth(nth(api.model.deployments, 0).dep!.storages, 0).file, dataFs);
    assert.deepEqual(roots(), []);
    assert.equal(api.model.hasBackups(), false);
    assert.match(api.status.item.text, /No backup/);
    assert.equal(api.status.stale, true);
  });

  test('Back Up Now: a full backup and its blob generation, on disk and in the tree', async () => {
    await fresh();
    const res = done(await exec<{ filestorage: { action: string; stamp: string }; blobGeneration?: string }[]>(Command.backup), 'backup');
    assert.equal(res.length, 1);
    assert.equal(nth(res, 0).filestorage.action, 'full');
    const firstFull = nth(res, 0).filestorage.stamp;
    assert.ok(isStamp(firstFull));
    const backups = ls(dir('backups'));
    for (const n of [`${firstFull}.fsz`, `${firstFull}.dat`, `${firstFull}.index`]) assert.ok(backups.includes(n), `${n} not in ${backups}`);
    // Our own deployment: a generation is a manifest over the blob pool.
    const gen0 = path.join(dir('blobstoragebackups'), `blobstorage.${firstFull}.json`);
    assert.equal((JSON.parse(fs.readFileSync(gen0, 'utf8')) as { count: number }).count, 2, 'the blob generation holds both blobs');
    assert.equal(blobFiles(path.join(dir('blobstoragebackups'), 'blobstorage.pool')).length, 2, 'both are in the pool');

    const top = roots();
    assert.equal(top.length, 2);
    assert.equal(nth(top, 0).type, 'group');
    assert.equal(label(nth(top, 0)), 'Backups');
    // The run log's newest runs, last (history.test.ts tests them).
    assert.deepEqual([nth(top, 1).type, label(nth(top, 1))], ['runs', 'Last runs']);
    const full = nth(children(top[0]) as GenerationNode[], 0);
    assert.equal(full.type, 'generation');
    assert.equal(full.gen.stamp, firstFull);
    const item = api.tree.getTreeItem(full);
    // Compact: today's backup reads as its local time alone.
    const local = parseStamp(firstFull);
    const pad = (n: number) => String(n).padStart(2, '0');
    assert.match(String(item.label), new RegExp(`^(Yesterday )?${pad(local.getHours())}:${pad(local.getMinutes())}:${pad(local.getSeconds())}( [A-Z].*)?$`));
    const d = String(item.description);
    for (const part of ['ago', 'full', '6 transactions', '"Added News"']) assert.ok(d.includes(part), `"${part}" not in the description "${d}"`);
    const icon = item.iconPath as vscode.ThemeIcon;
    assert.equal(icon.id, 'pass-filled');
    assert.equal(icon.color?.id, 'testing.iconPassed');
    assert.equal(item.contextValue, 'generation-kept', 'the only backup offers no Delete');
    assert.ok((item.tooltip as vscode.MarkdownString).value.includes(firstFull));
    assert.match(api.status.item.text, /Backup .*ago/);
    assert.equal(api.status.stale, false);
  });

  test('an incremental backup is a child of its full backup', async () => {
    await fresh();
    const firstFull = await backUp();
    await commit((s) => s.addDocument('Second', undefined, '/ editor'));
    const res = done(await exec<{ filestorage: { action: string; stamp: string } }[]>(Command.backup, { folder: ws }), 'backup');
    assert.equal(nth(res, 0).filestorage.action, 'incremental');
    const incremental = nth(res, 0).filestorage.stamp;
    assert.ok(ls(dir('backups')).includes(`${incremental}.deltafsz`));
    const full = gen(firstFull)!;
    assert.equal(full.incrementals.length, 1);
    assert.equal(api.tree.getTreeItem(full).collapsibleState, vscode.TreeItemCollapsibleState.Expanded);
    const inc = nth(children(full) as GenerationNode[], 0);
    assert.equal(inc.gen.stamp, incremental);
    assert.match(description(inc), /incremental/);
    assert.match(description(inc), /"Added Second" by/);
    // Neither offers Delete: deleting the full would take the newest backup, which continues it.
    assert.equal(api.tree.getTreeItem(inc).contextValue, 'generation-kept');
    assert.equal(api.tree.getTreeItem(full).contextValue, 'generation-kept');
  });

  test('full backup, snapshot and zip backup each land in their folders and groups', async () => {
    await fresh();
    const firstFull = await backUp();
    await commit((s) => s.addDocument('Second', undefined, '/ editor'));
    await backUp();
    await commit((s) => s.uploadFile('third.txt', Buffer.from('third')));
    const full = done(await exec<{ filestorage: { action: string; stamp: string } }[]>(Command.fullBackup), 'full backup');
    assert.equal(nth(full, 0).filestorage.action, 'full');
    const secondFull = nth(full, 0).filestorage.stamp;
    const snap = done(await exec<{ filestorage: { stamp: string } }[]>(Command.snapshot), 'snapshot');
    const zip = done(await exec<{ filestorage: { stamp: string }; blobGeneration: string }[]>(Command.zipBackup), 'zip backup');
    assert.ok(ls(dir('snapshotbackups')).includes(`${nth(snap, 0).filestorage.stamp}.fsz`));
    assert.ok(ls(dir('blobstoragesnapshots')).includes(`blobstorage.${nth(snap, 0).filestorage.stamp}.json`));
    assert.ok(ls(dir('zipbackups')).includes(`${nth(zip, 0).filestorage.stamp}.fsz`));
    assert.ok(ls(dir('blobstoragezips')).includes(`blobstorage.${nth(zip, 0).filestorage.stamp}.tar`));

    assert.deepEqual(roots().map(label), ['Backups', 'Snapshots', 'Zip backups', 'Last runs']);
    const backups = children(roots()[0]) as GenerationNode[];
    assert.deepEqual(
      backups.map((g) => g.gen.stamp),
      [secondFull, firstFull],
      'newest full first',
    );
    const zipItem = api.tree.getTreeItem(nth(children(roots()[2]), 0));
    assert.equal((zipItem.iconPath as vscode.ThemeIcon).id, 'file-zip');
  });

  test('verify backups, a restore drill and check consistency find nothing wrong', async () => {
    await history();
    const verified = done(await exec<{ severity: string }[]>(Command.verify), 'verify');
    assert.deepEqual(
      verified.filter((f) => f.severity !== 'info'),
      [],
    );
    const drills = done(await exec<{ ok: boolean; problems: string[]; transactions: number }[]>(Command.drill), 'drill');
    assert.equal(drills.length, 1);
    assert.ok(nth(drills, 0).ok, nth(drills, 0).problems.join('; '));
    assert.ok(nth(drills, 0).transactions >= 8);
    const findings = done(await exec<{ severity: string; message: string }[]>(Command.check), 'check');
    assert.deepEqual(
      findings.filter((f) => f.severity === 'error').map((f) => f.message),
      [],
    );
    const diags = vscode.languages.getDiagnostics(problemsOf(dataFs));
    assert.deepEqual(
      diags.filter((d) => d.severity === vscode.DiagnosticSeverity.Error).map((d) => d.message),
      [],
    );
  });

  test('the tree refreshes by itself when a backup appears on disk', async () => {
    const { secondFull } = await history();
    await commit((s) => s.addDocument('Made outside VS Code'));
    // A backup made by someone else (cron, the CLI): the engine, not the extension.
    const dep = await discoverDeployment(ws);
    const r = nth(await backupDeployment(dep, 'backup'), 0);
    assert.equal(r.filestorage.action, 'incremental');
    await waitFor(() => gen(r.filestorage.stamp!) !== undefined, 'the new incremental in the tree (file watcher)');
    assert.equal(gen(secondFull)!.incrementals.length, 1);
  });

  test('copy stamp, reveal in the explorer and in the OS', async () => {
    const { firstFull, incremental } = await history();
    const node = gen(firstFull)!;
    assert.equal(done(await exec<string>(Command.copyStamp, node), 'copy stamp'), firstFull);
    const text = await vscode.env.clipboard.readText();
    if (text) assert.equal(text, firstFull);
    const piece = done(await exec<string>(Command.revealInExplorer, node), 'reveal in explorer');
    assert.equal(piece, path.join(dir('backups'), `${firstFull}.fsz`));
    assert.ok(fs.existsSync(piece));
    assert.equal(done(await exec<string>(Command.revealInOS, { folder: ws, stamp: incremental }), 'reveal in OS'), path.join(dir('backups'), `${incremental}.deltafsz`));
  });

  test('restore a generation: the dev database is replaced and the old one kept', async () => {
    const { firstFull } = await history();
    await commit((s) => s.addDocument('Written after the backups'));
    const before = fs.statSync(dataFs).size;
    const want = gen(firstFull)!.gen.end;
    assert.ok(want < before);
    // The tree item's command, with arguments instead of the item (so no confirmation).
    const res = done(
      await exec<{ mode: string; stamp: string; keptOld: string[] }[]>(Command.restoreGeneration, { folder: ws, kind: 'backup', stamp: firstFull, yes: true }),
      'restore',
    );
    assert.equal(nth(res, 0).mode, 'full');
    assert.equal(nth(res, 0).stamp, firstFull);
    assert.equal(fs.statSync(dataFs).size, want, 'Data.fs now holds the state of the first full backup');
    const keptFs = nth(res, 0).keptOld.find((k) => path.basename(k).startsWith('Data.fs.before-restore-'));
    assert.ok(keptFs, `the old Data.fs is not kept: ${nth(res, 0).keptOld}`);
    assert.equal(fs.statSync(keptFs).size, before);
    const keptBlobs = nth(res, 0).keptOld.find((k) => path.basename(k).startsWith('blobstorage.before-restore-'));
    assert.ok(keptBlobs && fs.statSync(keptBlobs).isDirectory(), 'the old blobstorage is kept');
    assert.equal(blobFiles(blobDir).length, 2, 'the restored blobstorage holds the blobs of that state');
  });

  test('a restore leaves a trace: the live backup is marked, the kept state shown; Undo puts it back; Delete Kept Copies removes it', async () => {
    const { firstFull } = await history();
    await commit((s) => s.addDocument('Written after the backups'));
    const before = md5(fs.readFileSync(dataFs));
    done(await exec(Command.refresh), 'refresh');
    assert.ok(!gens().some((g) => description(g).includes('● live')), 'the live Data.fs is no backup yet');
    done(await exec(Command.restoreGeneration, { folder: ws, kind: 'backup', stamp: firstFull, yes: true }), 'restore');
    assert.match(description(gen(firstFull)!), /^● live · /);
    const kept = roots().find((n) => n.type === 'kept')!;
    assert.ok(kept, `no Kept copies node: ${roots().map(label)}`);
    assert.match(description(kept), /^1 · /);
    const [state] = children(kept);
    assert.equal(api.tree.getTreeItem(state!).contextValue, 'kept-newest');
    // Undo: the database written after the backups is back, byte for byte; what it replaced is kept in turn.
    const u = done(await exec<{ stamp: string }>(Command.undoRestore, { folder: ws, yes: true }), 'undo');
    assert.ok(u.stamp);
    assert.equal(md5(fs.readFileSync(dataFs)), before);
    assert.ok(!gens().some((g) => description(g).includes('● live')));
    assert.equal(children(roots().find((n) => n.type === 'kept')!).length, 1, 'the undone restore is kept, so the undo can be undone');
    const removed = done(await exec<string[]>(Command.deleteKept, { folder: ws, yes: true }), 'delete kept');
    assert.ok(removed.length >= 2);
    assert.equal(
      roots().find((n) => n.type === 'kept'),
      undefined,
    );
    assert.deepEqual(
      ls(path.dirname(dataFs)).filter((n) => n.includes('before-restore')),
      [],
    );
    assert.equal(md5(fs.readFileSync(dataFs)), before);
  });

  test('restore… to a date: the newest state before it', async () => {
    const { secondFull } = await history();
    await commit((s) => s.addDocument('Written after the backups'));
    const node = gen(secondFull)!;
    const res = done(await exec<{ mode: string; stamp: string }[]>(Command.restore, { date: node.gen.stamp, yes: true, keepOld: false }), 'restore by date');
    assert.equal(nth(res, 0).stamp, secondFull);
    assert.equal(fs.statSync(dataFs).size, node.gen.end);
  });

  test('restore is refused while the site runs, with the reason', async () => {
    const { firstFull } = await history();
    running = await holdSiteLock(dataFs);
    const before = fs.statSync(dataFs);
    const r = await exec(Command.restore, { stamp: firstFull, yes: true });
    assert.equal(r.status, 'failed');
    assert.equal((r as { code: string }).code, 'SITE_RUNNING');
    assert.match((r as { message: string }).message, /running/);
    const after = fs.statSync(dataFs);
    assert.equal(after.ino, before.ino);
    assert.equal(after.size, before.size);
    await running.release();
  });

  test('delete: never the newest complete generation; a full goes with its incrementals and their blobs', async () => {
    const { firstFull, incremental, secondFull } = await history();
    const newest = gens().find((g) => g.newestComplete && g.group.kind === 'backup')!;
    const refused = await exec(Command.deleteGeneration, { stamp: newest.gen.stamp, kind: 'backup', yes: true });
    assert.equal(refused.status, 'failed');
    assert.equal((refused as { code: string }).code, 'KEEP_NEWEST');
    assert.ok(ls(dir('backups')).some((n) => n.startsWith(newest.gen.stamp)));

    const res = done(await exec<{ stamps: string[] }>(Command.deleteGeneration, { storage: 'main', kind: 'backup', stamp: firstFull, yes: true }), 'delete');
    assert.deepEqual(res.stamps, [firstFull, incremental]);
    const left = ls(dir('backups'));
    for (const s of [firstFull, incremental]) {
      assert.ok(!left.some((n) => n.startsWith(s)), `${s} files remain: ${left}`);
      assert.ok(!ls(dir('blobstoragebackups')).includes(`blobstorage.${s}.json`), `the blob generation ${s} remains`);
    }
    assert.ok(left.includes(`${secondFull}.fsz`));
    const stale = gen(firstFull);
    assert.equal(stale, undefined, `still in the tree: ${stale?.group.kind} ${stale?.gen.name} ${JSON.stringify(ls(dir('backups')))}`);
    assert.deepEqual(
      (children(roots()[0]) as GenerationNode[]).map((g) => g.gen.stamp),
      [secondFull],
    );
    assert.equal(temps(dir('backups')).length, 0);
  });

  test('a long history is not a wall: the newest 8 chains, then Show older…', async () => {
    await fresh();
    // keep = 0: every full backup stays.
    await vscode.workspace.getConfiguration('ploneBackup').update('keep', 0, vscode.ConfigurationTarget.Global);
    const stamps: string[] = [];
    try {
      done(await exec(Command.refresh), 'refresh');
      for (let i = 0; i < 10; i++) stamps.push(await backUp(Command.fullBackup));
    } finally {
      await vscode.workspace.getConfiguration('ploneBackup').update('keep', undefined, vscode.ConfigurationTarget.Global);
    }
    const [group] = roots();
    let rows = children(group);
    assert.equal(rows.filter((n) => n.type === 'generation').length, 8);
    const more = rows.at(-1)!;
    assert.equal(more.type, 'message');
    assert.match(label(more), /^Show older… \(2 generations\)$/);
    const cmd = api.tree.getTreeItem(more).command!;
    await vscode.commands.executeCommand(cmd.command, ...(cmd.arguments ?? []));
    rows = children(group);
    assert.deepEqual(
      rows.map((n) => (n as GenerationNode).gen?.stamp),
      [...stamps].reverse(),
    );
  });

  test('Delete is offered only where it can succeed; Delete Older Chains… keeps the newest chain', async () => {
    const { firstFull, incremental, secondFull } = await history();
    // The older chain can go, the newest cannot (its full is the newest complete backup).
    assert.equal(api.tree.getTreeItem(gen(firstFull)!).contextValue, 'generation');
    assert.equal(api.tree.getTreeItem(gen(incremental)!).contextValue, 'generation');
    assert.equal(api.tree.getTreeItem(gen(secondFull)!).contextValue, 'generation-kept');
    const res = done(await exec<{ stamps: string[] }[]>(Command.deleteOlderChains, { folder: ws, storage: 'main', kind: 'backup', yes: true }), 'delete older chains');
    assert.deepEqual(
      res.flatMap((r) => r.stamps),
      [firstFull, incremental],
    );
    const left = ls(dir('backups'));
    assert.ok(!left.some((n) => n.startsWith(firstFull) || n.startsWith(incremental)), left.join(' '));
    assert.ok(left.includes(`${secondFull}.fsz`));
    const again = done(await exec<unknown[]>(Command.deleteOlderChains, { folder: ws, storage: 'main', kind: 'backup', yes: true }), 'nothing older');
    assert.deepEqual(again, []);
  });

  test('a missing blob file shows on Data.fs in the Problems panel, and goes away when fixed', async () => {
    await fresh();
    await backUp();
    const blobs = blobPaths(blobDir);
    assert.ok(blobs.length >= 2);
    const victim = nth(blobs, 0);
    const saved = fs.readFileSync(victim);
    fs.rmSync(victim);
    const findings = done(await exec<{ code: string; file: string; oid?: string }[]>(Command.check), 'check');
    const missing = findings.filter((f) => f.code === 'BLOB_MISSING');
    assert.equal(missing.length, 1);
    assert.equal(nth(missing, 0).file, dataFs);
    const diags = vscode.languages.getDiagnostics(problemsOf(dataFs));
    const d = diags.find((x) => x.code === 'BLOB_MISSING');
    assert.ok(d, `no BLOB_MISSING diagnostic on Data.fs: ${JSON.stringify(diags.map((x) => x.message))}`);
    assert.equal(d.severity, vscode.DiagnosticSeverity.Error);
    assert.equal(d.source, 'Plone Backup');
    assert.ok(d.message.includes(`oid ${nth(missing, 0).oid}`), d.message);
    assert.ok(d.message.includes(nth(path.relative(blobDir, victim).split(path.sep), 0)) || d.message.includes('.blob'));

    // Put it back and write a transaction: the storage watcher re-checks by itself.
    fs.writeFileSync(victim, saved);
    await commit((s) => s.addDocument('Repaired'));
    await waitFor(() => !vscode.languages.getDiagnostics(problemsOf(dataFs)).some((x) => x.code === 'BLOB_MISSING'), 'the automatic check to clear the diagnostic', 15_000);
  });

  test('a backup cancelled before it starts changes nothing', async () => {
    await fresh();
    await backUp();
    const before = { b: ls(dir('backups')), g: ls(dir('blobstoragebackups')) };
    const cts = new vscode.CancellationTokenSource();
    cts.cancel();
    const r = await exec(Command.fullBackup, { token: cts.token });
    assert.equal(r.status, 'cancelled');
    assert.deepEqual(ls(dir('backups')), before.b);
    assert.deepEqual(ls(dir('blobstoragebackups')), before.g);
  });

  test('a backup cancelled while it writes leaves no partial files', async () => {
    await fresh();
    await backUp();
    // A database big enough that the full backup takes a while (incompressible text).
    await commit(async (s) => {
      for (let i = 0; i < 12; i++) await s.addDocument(`Big ${i}`, randomBytes(1536 * 1024).toString('base64'));
    });
    const repo = dir('backups');
    const blobs = dir('blobstoragebackups');
    const before = { b: ls(repo).filter((n) => !isCache(n)), g: ls(blobs) };
    const ac = new AbortController();
    // Cancel as soon as the engine has a temp file on disk: truly mid-way.
    let sawTemp = false;
    const poll = setInterval(() => {
      if (temps(repo).length || temps(blobs).length) {
        sawTemp = true;
        ac.abort();
      }
    }, 2);
    const r = await exec(Command.fullBackup, { signal: ac.signal });
    clearInterval(poll);
    assert.ok(sawTemp, 'the backup finished before a temp file was seen');
    assert.equal(r.status, 'cancelled');
    assert.deepEqual(temps(repo), [], 'temp files left in the repository');
    assert.deepEqual(temps(blobs), [], 'temp generations left');
    assert.deepEqual(
      ls(repo).filter((n) => !isCache(n)),
      before.b,
      'the repository changed',
    );
    assert.deepEqual(ls(blobs), before.g, 'the blob backups changed');
    assert.ok(!fs.existsSync(path.join(repo, '.plone-backup.lock')), 'the lock was not released');
    // And the next backup works.
    const again = done(await exec<{ filestorage: { action: string } }[]>(Command.backup), 'backup after the cancel');
    assert.notEqual(nth(again, 0).filestorage.action, 'none');
    assert.deepEqual(temps(repo), []);
  });

  test('the status bar warns when the newest backup is older than the setting', async () => {
    await fresh();
    await backUp();
    const cfg = vscode.workspace.getConfiguration('ploneBackup');
    await cfg.update('statusBar.warnAfterHours', 0.0001, vscode.ConfigurationTarget.Global);
    try {
      // Backups made within one second get stamps ahead of the clock, so the newest
      // may be a few seconds in the future: wait until it is older than 0.36 s.
      for (let i = 0; i < 60 && !api.status.stale; i++) {
        await new Promise((r) => setTimeout(r, 250));
        api.status.update();
      }
      assert.equal(api.status.stale, true);
      assert.equal((api.status.item.backgroundColor as vscode.ThemeColor | undefined)?.id, 'statusBarItem.warningBackground');
    } finally {
      await cfg.update('statusBar.warnAfterHours', undefined, vscode.ConfigurationTarget.Global);
    }
    api.status.update();
    assert.equal(api.status.stale, false);
    assert.equal(api.status.item.backgroundColor, undefined);
  });

  test('settings map onto the discovery (backupDir, keep)', async () => {
    await fresh();
    const cfg = vscode.workspace.getConfiguration('ploneBackup');
    await cfg.update('backupDir', 'elsewhere', vscode.ConfigurationTarget.Global);
    await cfg.update('keep', 5, vscode.ConfigurationTarget.Global);
    try {
      done(await exec(Command.refresh), 'refresh');
      const dep = nth(api.model.deployments, 0).dep!;
      assert.equal(nth(dep.storages, 0).dirs.backups, path.join(ws, 'elsewhere', 'backups'));
      assert.equal(dep.settings.keep, 5);
      assert.deepEqual(roots(), [], 'no backups there yet');
    } finally {
      await cfg.update('backupDir', undefined, vscode.ConfigurationTarget.Global);
      await cfg.update('keep', undefined, vscode.ConfigurationTarget.Global);
    }
    done(await exec(Command.refresh), 'refresh');
    assert.equal(nth(nth(api.model.deployments, 0).dep!.storages, 0).dirs.backups, dir('backups'));
    assert.equal(nth(api.model.deployments, 0).dep!.settings.keep, 2);
  });

  test('open settings and show output', async () => {
    done(await exec(Command.openSettings), 'open settings');
    done(await exec(Command.showOutput), 'show output');
  });

  test('restore… without arguments asks with a quick pick of the generations (dismissed: nothing happens)', async () => {
    await fresh();
    await backUp();
    const before = fs.statSync(dataFs);
    let settled = false;
    const p = exec(Command.restore).finally(() => (settled = true));
    // Dismiss the quick pick once it is up (closing it earlier does nothing).
    const end = Date.now() + 10_000;
    while (!settled && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 200));
      await vscode.commands.executeCommand('workbench.action.closeQuickOpen');
    }
    assert.equal((await p).status, 'declined');
    assert.equal(fs.statSync(dataFs).ino, before.ino);
  });

  test('several storages are shown separately and all backed up', async () => {
    await fresh();
    await backUp();
    const catalog = await SampleSite.create({ file: path.join(var_, 'filestorage', 'catalog.fs'), blobDir: path.join(var_, 'blobstorage_catalog') });
    await catalog.uploadFile('index.bin', randomBytes(500));
    await catalog.close();
    done(await exec(Command.refresh), 'refresh');
    assert.deepEqual(
      nth(api.model.deployments, 0).dep!.storages.map((s) => s.name),
      ['main', 'catalog'],
    );
    assert.deepEqual(
      roots().map((n) => [n.type, label(n)]),
      [
        ['storage', 'main'],
        ['storage', 'catalog'],
        ['runs', 'Last runs'],
      ],
    );
    assert.deepEqual(
      children(roots()[1]).map((n) => [n.type, label(n)]),
      [['message', 'No backup yet']],
    );
    const res = done(await exec<{ storage: string; filestorage: { action: string } }[]>(Command.backup), 'backup');
    // Additional storages first, as collective.recipe.backup does; main has nothing new.
    assert.deepEqual(
      res.map((r) => [r.storage, r.filestorage.action]),
      [
        ['catalog', 'full'],
        ['main', 'none'],
      ],
    );
    assert.ok(ls(dir('backups_catalog')).some((n) => n.endsWith('.fsz')));
    assert.ok(ls(dir('blobstoragebackups_catalog')).some((n) => n.startsWith('blobstorage_catalog.')));
    const group = nth(children(roots()[1]), 0);
    assert.equal(label(group), 'Backups');
    assert.equal(children(group).length, 1);
  });
});

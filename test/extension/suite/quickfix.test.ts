// Issue 15, item 4: the Problems entries can be acted on. A deleted blob file is
// noticed by the live check of recent blob files (src/extension/blobWatch.ts)
// without a Data.fs write; its entry sits on a read-only report (not the binary
// Data.fs) and offers Quick Fixes (src/extension/quickfix.ts): restore exactly
// the missing blob file from the backup of the current state (through the real
// restore and its confirmation, answered here through the test hooks), show that
// backup in the Backups view; "no backup yet" offers Back Up Now.
//
// Self-contained: each test starts from a fresh sample site in the test
// workspace's var/ (the old one moved aside, as commands.test.ts does, so that
// a new Data.fs never gets the inode of an old one).
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { SampleSite } from '../../../src/engine/internal';
import { Command } from '../../../src/extension/commands';
import { done, exec, ls, testWorkspace, waitFor, type TestWorkspace } from './host';
import type { PloneBackupApi } from '../../../src/extension/extension';
import type { Confirmation } from '../../../src/extension/safety';
import type { GenerationNode } from '../../../src/extension/tree';
import { blobPaths } from '../../support/fs';
import { nth } from '../../support/must';

const sha = (file: string) => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');

suite('Quick Fixes on the Problems entries, and the live check of recent blob files', function () {
  this.timeout(60_000);
  let api: PloneBackupApi;
  let ws: string;
  let var_: string;
  let dataFs: string;
  let blobDir: string;
  let w: TestWorkspace;
  let asked: Confirmation[] = [];
  let answer = true;

  const report = () => vscode.Uri.file(dataFs).with({ scheme: 'plone-backup-problems' });
  const diagnostic = (code: string) => vscode.languages.getDiagnostics(report()).find((d) => d.code === code);
  /** The Quick Fixes VS Code offers on the entry (on its report, opened as the Problems panel opens it). */
  const codeActions = async (d: vscode.Diagnostic) => {
    // The report is updated (asynchronously, as VS Code asks the content provider again) with the findings.
    await waitFor(
      async () => {
        const doc = await vscode.workspace.openTextDocument(report());
        return d.range.start.line < doc.lineCount && doc.lineAt(d.range.start.line).text.includes(d.message);
      },
      'the report to show the entry',
      5_000,
    );
    return (await vscode.commands.executeCommand<vscode.CodeAction[]>('vscode.executeCodeActionProvider', report(), d.range)) ?? [];
  };
  const run = <T>(a: vscode.CodeAction) => exec<T>(a.command!.command, a.command!.arguments?.[0]);

  const fresh = (): Promise<void> => w.fresh();

  suiteSetup(async () => {
    w = await testWorkspace('quickfix');
    ({ ws, dataFs, blobDir, api } = w);
    var_ = w.varDir;
    assert.ok(api?.hooks, 'the test hooks are not there (PLONE_BACKUP_TEST_HOOKS=1 in the extension host?)');
    api.hooks.confirm = (q) => {
      asked.push(q);
      return answer;
    };
  });

  setup(() => {
    asked = [];
    answer = true;
  });

  suiteTeardown(() => {
    if (api?.hooks) api.hooks.confirm = undefined;
    w?.dispose();
  });

  test('no backup yet: the entry offers Back Up Now, which backs up', async () => {
    await fresh();
    done(await exec(Command.check), 'check');
    const d = diagnostic('NO_BACKUP');
    assert.ok(d, `no NO_BACKUP entry: ${JSON.stringify(vscode.languages.getDiagnostics(report()).map((x) => x.message))}`);
    assert.match(d.message, /"Plone Backup: Back Up Now"/, 'the hint names the command, not the CLI');
    assert.doesNotMatch(d.message, /`plone-backup/);
    const actions = await codeActions(d);
    const backUp = actions.find((a) => a.title === 'Back Up Now');
    assert.ok(backUp, `no Back Up Now among ${JSON.stringify(actions.map((a) => a.title))}`);
    assert.equal(backUp.kind?.value, vscode.CodeActionKind.QuickFix.value);
    const r = done(await run<{ filestorage: { action: string } }[]>(backUp), 'Back Up Now');
    assert.equal(nth(r, 0).filestorage.action, 'full');
    assert.ok(ls(path.join(var_, 'backups')).some((n) => n.endsWith('.fsz')));
    await waitFor(() => !diagnostic('NO_BACKUP'), 'the NO_BACKUP entry to go', 15_000);
  });

  test('a deleted blob file shows within seconds without a Data.fs write; its Quick Fix restores exactly it, Data.fs unchanged; Show in Backups View reveals the backup', async () => {
    await fresh();
    const stamp = nth(done(await exec<{ filestorage: { stamp: string } }[]>(Command.backup), 'backup'), 0).filestorage.stamp;
    done(await exec(Command.check), 'check');
    assert.equal(diagnostic('BLOB_MISSING'), undefined);
    // The live check's scan names the recent blob files; their folders are watched.
    const blobs = blobPaths(blobDir);
    assert.equal(blobs.length, 2);
    await waitFor(() => JSON.stringify([...api.blobWatch.watchedFiles].sort()) === JSON.stringify(blobs), "the site's two blob files to be watched");
    assert.equal(api.blobWatch.watchedFolders.length, 2);
    const victim = nth(blobs, 1);
    const saved = fs.readFileSync(victim);
    const before = { stat: fs.statSync(dataFs), sha: sha(dataFs), others: blobs.filter((b) => b !== victim).map(sha) };

    fs.rmSync(victim);
    const t0 = Date.now();
    await waitFor(() => !!diagnostic('BLOB_MISSING'), 'the live check to notice the deleted blob (a watch, not a poll of Data.fs)', 20_000);
    const noticed = Date.now() - t0;
    assert.equal(fs.statSync(dataFs).mtimeMs, before.stat.mtimeMs, 'Data.fs was not written');
    const d = diagnostic('BLOB_MISSING')!;
    assert.equal(d.severity, vscode.DiagnosticSeverity.Error);
    assert.ok(d.message.includes(victim), d.message);
    assert.doesNotMatch(d.message, /`plone-backup/);
    assert.match(d.message, /Plone Backup: Restore…/);
    assert.equal(d.relatedInformation?.[0]?.location.uri.fsPath, victim, 'the related information points at the blob file');
    // Not on the binary Data.fs: on its report, which opens as text, the entry on its own line.
    assert.deepEqual(vscode.languages.getDiagnostics(vscode.Uri.file(dataFs)), []);
    const actions = await codeActions(d);
    const doc = await vscode.workspace.openTextDocument(report());
    assert.ok(doc.lineAt(d.range.start.line).text.includes(victim), doc.getText());
    assert.match(doc.lineAt(0).text, /^Plone Backup: 1 problem with /);
    const titles = actions.map((a) => a.title);
    const restore = actions.find((a) => a.title.startsWith('Restore the missing blob file from the backup of'));
    assert.ok(restore, `no restore Quick Fix among ${JSON.stringify(titles)}`);
    assert.equal(restore.isPreferred, true);
    const show = actions.find((a) => a.title === 'Show in Backups View');
    assert.ok(show, `no Show in Backups View among ${JSON.stringify(titles)}`);

    // Show in Backups View: the generation's item is revealed and selected.
    assert.equal(done(await run<string>(show), 'Show in Backups View'), stamp);
    await waitFor(() => api.view.visible && (api.view.selection[0] as GenerationNode | undefined)?.gen?.stamp === stamp, 'the backup to be selected in the view');

    // No: nothing is restored.
    answer = false;
    assert.equal((await run(restore)).status, 'declined');
    assert.ok(!fs.existsSync(victim));
    // Yes (the real confirmation, answered through the hook): exactly the missing file comes back.
    answer = true;
    const res = done(await run<{ mode: string; blobFilesAdded: number; keptOld: string[] }[]>(restore), 'restore the missing blob file');
    assert.deepEqual(
      asked.map((q) => q.kind),
      ['restore', 'restore'],
    );
    assert.match(nth(asked, 0).message, /missing blob files/);
    assert.ok(nth(asked, 0).detail.includes(path.relative(ws, victim)), nth(asked, 0).detail);
    assert.equal(nth(res, 0).mode, 'unchanged');
    assert.equal(nth(res, 0).blobFilesAdded, 1);
    assert.deepEqual(nth(res, 0).keptOld, []);
    assert.deepEqual(fs.readFileSync(victim), saved, 'the blob file is byte-identical');
    const after = fs.statSync(dataFs);
    assert.equal(after.ino, before.stat.ino);
    assert.equal(after.size, before.stat.size);
    assert.equal(sha(dataFs), before.sha, 'Data.fs is unchanged');
    assert.deepEqual(blobPaths(blobDir), blobs);
    assert.deepEqual(blobs.filter((b) => b !== victim).map(sha), before.others);
    await waitFor(() => !diagnostic('BLOB_MISSING'), 'the BLOB_MISSING entry to go', 15_000);
    console.log(`    (the deleted blob was noticed in ${noticed} ms)`);
  });

  test('the restore Quick Fix refuses when the site moved on since (it would replace Data.fs)', async () => {
    await fresh();
    done(await exec<{ filestorage: { stamp: string } }[]>(Command.backup), 'backup');
    done(await exec(Command.check), 'check');
    const victim = nth(blobPaths(blobDir), 0);
    await waitFor(() => api.blobWatch.watchedFiles.includes(victim), 'the blob files to be watched');
    const saved = fs.readFileSync(victim);
    fs.rmSync(victim);
    await waitFor(() => !!diagnostic('BLOB_MISSING'), 'the live check to notice the deleted blob (a watch, not a poll of Data.fs)', 20_000);
    const offered = await codeActions(diagnostic('BLOB_MISSING')!);
    const restore = offered.find((a) => a.title.startsWith('Restore the missing blob file'));
    assert.ok(restore, JSON.stringify(offered.map((a) => a.title)));
    // A transaction after the Quick Fix was computed (its arguments name the backup).
    const site = await SampleSite.open({ file: dataFs, blobDir });
    await site.addDocument('Later');
    await site.close();
    const before = sha(dataFs);
    const r = await run(restore);
    assert.equal(r.status, 'failed', JSON.stringify(r));
    assert.match((r as { message: string }).message, /no longer in the state/);
    assert.deepEqual(asked, [], 'nothing to confirm: nothing is done');
    assert.equal(sha(dataFs), before);
    // Now no backup holds the current state: only the picker is offered.
    done(await exec(Command.check), 'check');
    const d = diagnostic('BLOB_MISSING')!;
    const titles = (await codeActions(d)).map((a) => a.title);
    assert.ok(!titles.some((t) => t.startsWith('Restore the missing blob file')), JSON.stringify(titles));
    assert.ok(
      titles.some((t) => t.startsWith('Restore…')),
      JSON.stringify(titles),
    );
    // A whole site for the suites after this one.
    fs.writeFileSync(victim, saved);
    done(await exec(Command.check), 'check');
  });
});

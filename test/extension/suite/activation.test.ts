// The extension is installed in the host, activates, and its commands work.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { Command, VIEW_ID } from '../../../src/extension/commands';
import { EXTENSION_ID } from './host';
import { nth } from '../../support/must';

suite('Extension activation', () => {
  test('is present, activates and registers its commands', async () => {
    const ext = vscode.extensions.getExtension(EXTENSION_ID);
    assert.ok(ext, `extension ${EXTENSION_ID} is not loaded in the host`);
    await ext.activate();
    assert.equal(ext.isActive, true);
    const commands = await vscode.commands.getCommands(true);
    for (const id of Object.values(Command)) assert.ok(commands.includes(id), `${id} is not registered`);
  });

  test('package.json contributes exactly the typed command ids, the view and the settings', () => {
    const pkg = vscode.extensions.getExtension(EXTENSION_ID)!.packageJSON;
    const contributed = (pkg.contributes.commands as { command: string; category: string }[]).map((c) => c.command).sort();
    assert.deepEqual(contributed, Object.values(Command).sort());
    for (const c of pkg.contributes.commands) assert.equal(c.category, 'Plone Backup');
    assert.deepEqual(
      pkg.contributes.views.ploneBackup.map((v: { id: string }) => v.id),
      [VIEW_ID],
    );
    const props = Object.keys(pkg.contributes.configuration.properties).sort();
    for (const key of ['varDir', 'file', 'blobDir', 'backupDir', 'keep', 'gzip', 'quick', 'statusBar.warnAfterHours', 'checkOnOpen']) {
      assert.ok(props.includes(`ploneBackup.${key}`), `setting ploneBackup.${key} is missing`);
    }
  });

  test('workspace trust: limited (nothing that writes; the path settings not from the workspace), no virtual workspaces', () => {
    const pkg = vscode.extensions.getExtension(EXTENSION_ID)!.packageJSON;
    const trust = pkg.capabilities?.untrustedWorkspaces;
    assert.equal(trust?.supported, 'limited');
    assert.ok(typeof trust.description === 'string' && trust.description.length > 0);
    for (const key of ['varDir', 'file', 'blobDir', 'backupDir', 'keep', 'part'])
      assert.ok(trust.restrictedConfigurations.includes(`ploneBackup.${key}`), `ploneBackup.${key} is not restricted`);
    assert.equal(pkg.capabilities.virtualWorkspaces, false);
    // Menus and the palette offer nothing that writes in an untrusted workspace.
    const writes = [
      Command.backup,
      Command.fullBackup,
      Command.snapshot,
      Command.zipBackup,
      Command.restore,
      Command.restoreGeneration,
      Command.deleteGeneration,
      Command.deleteOlderChains,
      Command.undoRestore,
      Command.deleteKept,
      Command.schedule,
    ] as string[];
    const menus = pkg.contributes.menus as Record<string, { command: string; when?: string }[]>;
    for (const [where, items] of Object.entries(menus)) {
      for (const m of items) {
        if (writes.includes(m.command)) assert.ok(m.when === 'false' || /\bisWorkspaceTrusted\b/.test(m.when ?? ''), `${where}: ${m.command} shows when untrusted (${m.when})`);
      }
    }
    for (const c of writes)
      assert.ok(
        (menus.commandPalette ?? []).some((m) => m.command === c),
        `${c} is not in the commandPalette menu`,
      );
    // Nor do the welcome views link to one.
    for (const w of pkg.contributes.viewsWelcome as { contents: string; when?: string }[]) {
      for (const c of writes) if (w.contents.includes(`command:${c})`)) assert.match(w.when ?? '', /(^|[^!])\bisWorkspaceTrusted\b/, `the welcome view offers ${c} when untrusted`);
    }
  });

  test('the API (and its test hooks) exists only when the test runner sets PLONE_BACKUP_TEST_HOOKS=1', async () => {
    const api = (await vscode.extensions.getExtension(EXTENSION_ID)!.activate()) as { hooks?: { bypassArgs: boolean } } | undefined;
    if (process.env.PLONE_BACKUP_TEST_HOOKS === '1') assert.equal(api?.hooks?.bypassArgs, true);
    else assert.equal(api, undefined, 'activate() returns its parts without the test hooks: another extension could reach in');
  });

  test('ploneBackup.refresh runs without throwing', async () => {
    await vscode.commands.executeCommand('ploneBackup.refresh');
  });

  test('the test workspace is open and named in PLONE_BACKUP_TEST_WORKSPACE', () => {
    const expected = process.env.PLONE_BACKUP_TEST_WORKSPACE;
    assert.ok(expected, 'PLONE_BACKUP_TEST_WORKSPACE is not set in the extension host');
    const folders = vscode.workspace.workspaceFolders ?? [];
    assert.equal(folders.length, 1, 'expected exactly one workspace folder');
    assert.equal(nth(folders, 0).uri.fsPath, expected);
  });

  // Part of the .vsix run only (the runner sets PLONE_BACKUP_EXPECT_VSIX there); in the
  // development run the extension rightly runs from the repository, so the test is not defined.
  const vsixOnly = process.env.PLONE_BACKUP_EXPECT_VSIX ? test : () => undefined;
  vsixOnly('the installed extension is the packaged one (from the .vsix)', function () {
    const ext = vscode.extensions.getExtension(EXTENSION_ID)!;
    const root = ext.extensionPath;
    assert.ok(fs.existsSync(path.join(root, 'dist', 'extension.js')), 'dist/extension.js is not in the package');
    for (const absent of ['src', 'test', 'scripts', 'node_modules', path.join('dist', 'cli.js'), 'tsconfig.json']) {
      assert.ok(!fs.existsSync(path.join(root, absent)), `${absent} should not be in the package`);
    }
    assert.ok(fs.existsSync(path.join(root, 'media', 'plone-backup.svg')), 'media/plone-backup.svg is not in the package');
    assert.ok(!root.startsWith(path.resolve(__dirname, '../../../..')), `the extension runs from the repository (${root}), not from the .vsix`);
  });
});

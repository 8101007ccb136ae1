// The run log in the editor, and the Backup History (issue 14): runs of the
// CLI in a child process (as cron runs it) reach the status bar and the
// Backups view's "Last runs" group through the file watcher, a failure as an
// error with its message until a later success; Show Backup History opens a
// webview whose page holds a strict CSP and a point per generation, and whose
// messages reveal a generation or go through the confirmed Restore.
//
// Each test starts from a fresh sample site (var/ moved aside), so it runs
// alone (PLONE_BACKUP_TEST_GREP='run log and history') or after the others.
import * as assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import * as vscode from 'vscode';
import { SampleSite } from '../../../src/engine/internal';
import { Command } from '../../../src/extension/commands';
import type { PloneBackupApi } from '../../../src/extension/extension';
import type { Node } from '../../../src/extension/tree';
import { done, exec, EXTENSION_ID, testWorkspace, waitFor, type TestWorkspace } from './host';
import { nth } from '../../support/must';

/** This suite's sample site: 2 documents and a file. */
async function sampleContent(site: SampleSite): Promise<void> {
  await site.addDocument('Front page');
  await site.uploadFile('report.pdf', Buffer.alloc(3000, 7));
  await site.addDocument('News');
}

suite('Plone Backup run log and history', function () {
  this.timeout(90_000);
  let api: PloneBackupApi;
  let ws: string;
  let var_: string;
  let dataFs: string;
  let blobDir: string;
  let cli: string;
  let w: TestWorkspace;

  suiteSetup(async () => {
    w = await testWorkspace('history', { site: sampleContent });
    ({ ws, dataFs, blobDir, api } = w);
    var_ = w.varDir;
    cli = path.join(vscode.extensions.getExtension(EXTENSION_ID)!.extensionPath, 'dist', 'cli.js');
    assert.ok(fs.existsSync(cli), `${cli} is not built (npm run build)`);
    assert.ok(api.history, 'activate() does not return the history panel');
  });
  suiteTeardown(() => {
    api?.history.panel?.dispose();
    w?.dispose();
  });

  /** A fresh sample site of this suite's content (see sampleContent). */
  const fresh = (): Promise<void> => w.fresh({ site: sampleContent });

  /** `plone-backup ARGS` in a child process, as cron runs it; its exit code and output. */
  async function runCli(...args: string[]): Promise<{ code: number; out: string }> {
    // In @vscode/test-electron the host's execPath is Electron: run it as node.
    const env = { ...process.env, ELECTRON_RUN_AS_NODE: '1' };
    try {
      const r = await promisify(execFile)(process.execPath, [cli, ...args, '--dir', ws], { cwd: ws, env, timeout: 60_000 });
      return { code: 0, out: `${r.stdout}${r.stderr}` };
    } catch (e) {
      const x = e as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof x.code === 'number' ? x.code : -1, out: `${x.stdout ?? ''}${x.stderr ?? ''}` };
    }
  }

  const tooltip = () => {
    const t = api.status.item.tooltip;
    return typeof t === 'string' ? t : (t?.value ?? '');
  };
  const bg = () => (api.status.item.backgroundColor as vscode.ThemeColor | undefined)?.id;
  const runsNode = () => api.tree.getChildren().find((n: Node) => n.type === 'runs');
  const desc = (n: Node) => String(api.tree.getTreeItem(n).description ?? '');

  test('a backup that cron (the CLI) ran and that failed turns the status bar into an error with its message; a later success clears it', async () => {
    await fresh();
    const first = await runCli('backup', '-q');
    assert.equal(first.code, 0, first.out);
    await waitFor(() => api.model.deployments[0]?.runs?.records.length === 1 && api.model.hasBackups(), 'the first run and backup to be seen', 15_000);
    assert.equal(api.status.failing, false);
    // The status bar follows the view's generations, which the model may list a moment later.
    await waitFor(() => /Backup .*ago/.test(api.status.item.text), 'the status bar to show the backup', 15_000);
    assert.match(tooltip(), /Last run: backup ok · cli on /);

    // A new file whose blob goes missing before the next backup: the CLI fails with BLOB_MISSING.
    const site = await SampleSite.open({ file: dataFs, blobDir });
    try {
      await site.uploadFile('minutes.pdf', Buffer.alloc(5000, 9));
    } finally {
      await site.close();
    }
    const blobs = findBlobs(blobDir).sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs || b.localeCompare(a));
    const victim = blobs.find((b) => fs.statSync(b).size === 5000)!;
    assert.ok(victim, `no blob of 5000 bytes among ${blobs.join(', ')}`);
    const saved = fs.readFileSync(victim);
    fs.rmSync(victim);
    const failed = await runCli('backup', '-q');
    assert.equal(failed.code, 1, `the backup should fail without its blob: ${failed.out}`);

    // Nothing is clicked or refreshed: the run log's watcher brings it.
    await waitFor(() => api.status.failing, 'the status bar to show the failed run', 15_000);
    assert.equal(bg(), 'statusBarItem.errorBackground');
    assert.match(api.status.item.text, /\$\(error\) backup failed .*ago/);
    assert.match(tooltip(), /backup failed/);
    assert.match(tooltip(), /missing/, 'the error message is in the tooltip');
    assert.match(tooltip(), /BLOB\\?_MISSING/);
    assert.match(tooltip(), /plone-backup backup/, 'the command that failed');
    const click = api.status.item.command;
    assert.equal(typeof click === 'string' ? click : click?.command, Command.showHistory, 'a click opens the history');
    const runs = runsNode();
    assert.ok(runs, 'no "Last runs" group in the view');
    assert.match(desc(runs), /^backup failed .*ago · failing: backup$/);
    const rows = api.tree.getChildren(runs);
    assert.equal(rows.length, 2);
    assert.equal(String(api.tree.getTreeItem(nth(rows, 0)).label), 'backup failed');
    assert.match(desc(nth(rows, 0)), /^cli on .* · .*ago/);
    assert.equal(String(api.tree.getTreeItem(nth(rows, 1)).label), 'backup ok');
    assert.match(desc(nth(rows, 1)), /full, \d+ transactions, [\d.]+ (B|KB)/);

    // Put back, backed up again: the failure is cleared by the success.
    fs.writeFileSync(victim, saved);
    const again = await runCli('backup', '-q');
    assert.equal(again.code, 0, again.out);
    await waitFor(() => !api.status.failing, 'the success to clear the error state', 15_000);
    assert.equal(bg(), undefined);
    assert.match(api.status.item.text, /^\$\(database\) Backup .*ago/);
    await waitFor(() => /^backup ok /.test(desc(runsNode()!)), 'the Last runs group to show the success', 15_000);
  });

  test('Show Backup History: a webview with a strict CSP and a point per generation; "reveal" selects it in the view, "restore" asks first', async () => {
    await fresh();
    assert.equal((await runCli('fullbackup', '-q')).code, 0);
    const site = await SampleSite.open({ file: dataFs, blobDir });
    try {
      await site.addDocument('Contact');
    } finally {
      await site.close();
    }
    assert.equal((await runCli('backup', '-q')).code, 0);
    done(await exec(Command.refresh), 'refresh');
    await waitFor(() => api.model.deployments[0]?.runs?.records.length === 2, 'both runs to be read', 15_000);
    const gens = api.tree.allGenerations();
    assert.equal(gens.length, 2);

    const res = done(await exec<{ points: number; runs: number }>(Command.showHistory), 'showHistory');
    assert.equal(res.points, 2);
    const panel = api.history.panel;
    assert.ok(panel, 'no panel');
    assert.equal(panel.title, 'Backup History');
    const html = panel.webview.html;
    const policy = /<meta http-equiv="Content-Security-Policy" content="([^"]*)">/.exec(html)?.[1] ?? '';
    assert.match(policy, /^default-src &#39;none&#39;;|^default-src 'none';/);
    assert.match(policy, /script-src (&#39;|')nonce-[A-Za-z0-9+/=]+(&#39;|');/);
    assert.match(policy, new RegExp(`style-src ${panel.webview.cspSource.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')};`));
    const nonce = /script-src (?:&#39;|')nonce-([A-Za-z0-9+/=]+)/.exec(policy)![1];
    assert.ok(html.includes(`<script nonce="${nonce}" src="`) && /history\.js"><\/script>/.test(html), 'the one script carries the nonce');
    for (const g of gens)
      assert.match(html, new RegExp(`<g class="pt backup (full|incremental)[^"]*" data-root="[^"]*" data-storage="main" data-kind="backup" data-stamp="${g.gen.stamp}"`));
    assert.equal((html.match(/<g class="pt [^"]*" data-root=/g) ?? []).length, 2, 'one point per generation (the legend has its own marks)');

    // The page's "reveal" (a click on the older point): the full backup is selected in the Backups view.
    const full = gens.find((g) => g.gen.full)!;
    const root = nth(api.model.deployments, 0).root;
    const shown = await api.history.receive({ type: 'reveal', root, storage: 'main', kind: 'backup', stamp: full.gen.stamp });
    assert.equal(shown?.status, 'done', JSON.stringify(shown));
    await waitFor(() => api.view.selection.length === 1, 'a selection in the Backups view', 10_000);
    const sel = api.view.selection[0] as Node;
    assert.equal(sel.type, 'generation');
    assert.equal(sel.type === 'generation' && sel.gen.stamp, full.gen.stamp);
    // A generation the view does not list is not acted on.
    assert.equal(await api.history.receive({ type: 'reveal', root, storage: 'main', kind: 'backup', stamp: '2001-01-01-00-00-00' }), undefined);
    assert.equal(await api.history.receive({ type: 'restore', root: '/elsewhere', storage: 'main', kind: 'backup', stamp: full.gen.stamp }), undefined);

    // "restore": the usual Restore, with its confirmation (declined here: nothing changes).
    const before = fs.readFileSync(dataFs);
    const asked: string[] = [];
    api.hooks.confirm = (q) => {
      asked.push(q.message);
      return false;
    };
    try {
      const r = await api.history.receive({ type: 'restore', root, storage: 'main', kind: 'backup', stamp: full.gen.stamp });
      assert.equal(r?.status, 'declined', JSON.stringify(r));
    } finally {
      api.hooks.confirm = undefined;
    }
    assert.equal(asked.length, 1);
    assert.match(nth(asked, 0), /^Restore .* to the backup of /);
    assert.ok(before.equals(fs.readFileSync(dataFs)), 'Data.fs is unchanged');

    // A failed run recorded later is drawn without reopening the panel.
    fs.writeFileSync(path.join(var_, 'backups', path.basename(full.gen.name)), 'garbage');
    const v = await runCli('verify', '-q');
    assert.equal(v.code, 1, v.out);
    await waitFor(() => /<g class="run failed"/.test(api.history.panel?.webview.html ?? ''), 'the failed verify in the history', 15_000);
  });
});

function findBlobs(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...findBlobs(p));
    else if (e.name.endsWith('.blob')) out.push(p);
  }
  return out;
}

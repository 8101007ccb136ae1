// UI test: a backup made from outside VS Code shows up by itself, in sight
// (issue 15). A sample site with one full backup, the Plone Backup view open;
// the site changes and `plone-backup backup` runs in a terminal (the CLI, in a
// child process, as cron would). Without any click, the new incremental row
// appears in the tree and is on screen: not hidden under its full backup, whose
// row gained a child and would have stayed collapsed.
//
//   npm run build && npx tsc -p tsconfig.test.json
//   node scripts/vscode/run-offline.mjs --ui test/extension/ui/newest-visible.mjs
//
// PLONE_BACKUP_UI_SCREENSHOT_DIR=DIR saves DIR/screenshot-newest-backup.png,
// the tree with the new backup in sight (for the README).
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { engine, localIn, ls, pickRow, repo, seen, step, until, widenSidebar, oneLine } from './lib/ui.mjs';

const HOUR = 3600_000;

export default async function run(driver) {
  const { page, workspace } = driver;
  const file = path.join(workspace, 'var/filestorage/Data.fs');
  const blobDir = path.join(workspace, 'var/blobstorage');
  const backups = path.join(workspace, 'var/backups');
  // The extension's clock: the runner's zone for code-server, else this process's (the same one).
  const label = (stamp) => (driver.tz ? localIn(driver.tz, engine.parseStamp(stamp)) : engine.compactTime(stamp));

  const site = await engine.SampleSite.create({ file, blobDir });
  await site.addDocument('Front page', undefined, '/ admin');
  await site.uploadFile('annual-report.pdf', Buffer.alloc(40_000, 1));
  await site.close();
  const dep = await engine.discoverDeployment(workspace);
  const [full] = await engine.backupDeployment(dep, 'fullbackup', { now: () => new Date(Date.now() - 2 * HOUR) });
  const fullLabel = label(full.filestorage.stamp);

  const sidebar = page.locator('.part.sidebar');
  const rows = sidebar.locator('.monaco-list-row');
  await step(page, 'the view shows the one full backup', async () => {
    await driver.openActivity('Plone Backup');
    await rows.filter({ hasText: fullLabel }).first().waitFor({ timeout: 20_000 });
    await widenSidebar(page);
  });

  const stamp = await step(page, 'a change, then `plone-backup backup` from a terminal', async () => {
    const s = await engine.SampleSite.open({ file, blobDir });
    await s.addDocument('Contact', undefined, '/ editor');
    await s.close();
    const cli = path.join(repo, 'dist/cli.js');
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [cli, 'backup', '--dir', workspace], { cwd: workspace, timeout: 30_000 }).catch((e) => {
      throw new Error(`node dist/cli.js backup --dir ${workspace} failed (exit ${e.code}): ${e.stderr || e.stdout || e.message}`);
    });
    const made = ls(backups).filter((n) => n.endsWith('.deltafsz'));
    if (made.length !== 1) throw new Error(`expected one incremental in var/backups after the CLI, saw [${ls(backups)}]; it said: ${stdout}${stderr}`);
    return made[0].replace(/\.deltafsz$/, '');
  });
  const newLabel = label(stamp);

  await step(page, `the new incremental (${newLabel}) appears and is in sight, without a click`, async () => {
    const row = rows.filter({ hasText: newLabel }).first();
    // The tree follows the disk: the file watcher, then a refresh. Nothing is clicked meanwhile.
    const fullRow = rows.filter({ hasText: fullLabel }).first();
    await until(
      async () => (await row.count()) > 0,
      async () =>
        `no row reads ${newLabel} 20 s after the CLI's backup (the full backup's row is ${(await fullRow.getAttribute('aria-expanded')) === 'true' ? 'expanded' : 'collapsed'})`,
      20_000,
    );
    const text = oneLine(await row.innerText());
    if (!/incremental/.test(text) || !/Added Contact/.test(text)) throw new Error(`the new row reads "${text}"`);
    if (!(await row.isVisible())) throw new Error(`the row of ${newLabel} is in the tree but not visible`);
    const [r, bar] = [await row.boundingBox(), await sidebar.boundingBox()];
    if (!r || !bar || r.y < bar.y || r.y + r.height > bar.y + bar.height)
      throw new Error(`the row of ${newLabel} is outside the side bar (${JSON.stringify(r)} in ${JSON.stringify(bar)})`);
    // Shown as the full backup's child: its row is expanded, the new one right below it.
    if ((await fullRow.getAttribute('aria-expanded')) !== 'true') throw new Error(`the full backup of ${fullLabel} is collapsed`);
    const texts = (await driver.listRows('.part.sidebar')).map(oneLine);
    const at = (l) => texts.findIndex((t) => t.startsWith(l));
    if (at(newLabel) !== at(fullLabel) + 1) throw new Error(`the new incremental is not the first row under its full backup:\n    ${texts.join('\n    ')}`);
  });

  await step(page, 'Find a Backup…: typing what was done ("Uploaded annual-report") finds the full backup and selects its row', async () => {
    await driver.runCommand('Plone Backup: Find a Backup…');
    await pickRow(page, 'full', 'Uploaded annual-report');
    const selected = page.locator('.part.sidebar .monaco-list-row.selected');
    await until(
      async () => (await selected.count()) > 0 && oneLine(await selected.first().innerText()).startsWith(fullLabel),
      async () => `the selected row is not the full backup of ${fullLabel}: "${(await selected.count()) ? oneLine(await selected.first().innerText()) : 'none'}"`,
      10_000,
    );
  });

  const dir = process.env.PLONE_BACKUP_UI_SCREENSHOT_DIR;
  if (dir) {
    await page.mouse.move(640, 400);
    await page.waitForTimeout(300);
    await driver.screenshot(path.join(dir, 'screenshot-newest-backup.png'));
  }
  process.stderr.write(`[ui] done; the screen at the end:\n  ${await seen(page)}\n`);
  return 0;
}

// UI test: the Backup History (issue 14). A sample site with two days of
// backups (two full chains, hourly incrementals, 13 hours without any), a
// failed cron backup and a restore drill in its run log. "Plone Backup: Show
// Backup History" from the palette opens the webview: a point per generation,
// the gap, the failed run and the drill are drawn; a click on the first full
// backup's point selects its row in the Backups view, and the page offers
// Restore….
//
//   npm run build && npx tsc -p tsconfig.test.json
//   node scripts/vscode/run-offline.mjs --ui test/extension/ui/history.mjs
//
// PLONE_BACKUP_UI_SCREENSHOT_DIR=DIR saves DIR/screenshot-history.png (the
// README's picture is media/screenshot-history.png, made this way).
import os from 'node:os';
import path from 'node:path';
import { engine, seen, step, until } from './lib/ui.mjs';

const HOUR = 3600_000;

/** Backups at these hours before now (f: a full backup), each after a change; the 13 hours from -35 to -22 are the night without backups. */
const PLAN = [[40, 'f'], [39], [38], [37], [36], [35], [22], [21], [20, 'f'], [14], [13], [12], [11], [10], [4], [3], [2], [1]];

async function makeHistory(workspace) {
  const file = path.join(workspace, 'var/filestorage/Data.fs');
  const blobDir = path.join(workspace, 'var/blobstorage');
  const site = await engine.SampleSite.create({ file, blobDir });
  await site.addDocument('Front page', undefined, '/ admin');
  await site.uploadFile('annual-report.pdf', Buffer.alloc(40_000, 1));
  await site.close();
  const dep = await engine.discoverDeployment(workspace);
  const stamps = [];
  const runs = [];
  const at = (h) => new Date(Date.now() - h * HOUR).toISOString();
  const rec = (h, o) => ({ v: 1, start: at(h + 0.01), end: at(h), seconds: 36, host: os.hostname(), pid: 4242, via: 'cli', storages: [], ...o });
  let i = 0;
  for (const [h, full] of PLAN) {
    const s = await engine.SampleSite.open({ file, blobDir });
    for (let k = 0; k <= i % 3; k++) await s.addDocument(`News ${i}.${k}`, 'Lorem ipsum dolor sit amet. '.repeat(20 + 10 * i));
    if (i % 5 === 0) await s.uploadFile(`photo-${i}.jpg`, Buffer.alloc(20_000 + i * 1000, i));
    await s.close();
    const [r] = await engine.backupDeployment(dep, full ? 'fullbackup' : 'backup', { now: () => new Date(Date.now() - h * HOUR) });
    const f = r.filestorage;
    stamps.push(f.stamp);
    runs.push(
      rec(h - 0.01, {
        command: full ? 'fullbackup' : 'backup',
        outcome: 'ok',
        storages: [{ name: 'main', stamp: f.stamp, action: f.action, bytes: f.end - f.start, transactions: f.transactions }],
      }),
    );
    i++;
  }
  // The run log, as cron's runs would have left it: every backup above, a failed one in the night
  // (cleared by the next success) and a drill.
  runs.push(rec(18, { command: 'backup', outcome: 'failed', error: { code: 'IO', message: 'The disk holding /srv/backups is full (ENOSPC); the backup was not made.' } }));
  runs.push(rec(6, { command: 'drill', outcome: 'ok', storages: [{ name: 'main', stamp: stamps[13], ok: true, bytes: 90_000, transactions: 60 }] }));
  for (const x of runs.sort((a, b) => a.end.localeCompare(b.end))) await engine.appendRun(dep, x);
  return { dep, stamps };
}

/** The webview's page: the frame (of the nested ones VS Code makes) that holds the chart. */
async function historyFrame(page) {
  return until(
    async () => {
      for (const f of page.frames())
        if (
          (await f
            .locator('svg.history')
            .count()
            .catch(() => 0)) > 0
        )
          return f;
      return undefined;
    },
    'no frame shows the history chart 20 s after the command',
    20_000,
  );
}

export default async function run(driver) {
  const { page, workspace } = driver;
  const { stamps } = await makeHistory(workspace);
  // Retention (keep 2) keeps both chains: every generation is a point.
  const sidebar = page.locator('.part.sidebar');
  const rows = sidebar.locator('.monaco-list-row');
  const first = stamps[0];
  const firstLabel = engine.compactTime(first);

  await step(page, 'the Backups view lists the backups', async () => {
    await driver.openActivity('Plone Backup');
    await rows
      .filter({ hasText: engine.compactTime(stamps.at(-1)) })
      .first()
      .waitFor({ timeout: 20_000 });
  });

  const frame = await step(page, 'Plone Backup: Show Backup History opens the chart', async () => {
    await driver.runCommand('Plone Backup: Show Backup History');
    await page.locator('.tab').filter({ hasText: 'Backup History' }).first().waitFor({ timeout: 10_000 });
    return historyFrame(page);
  });

  await step(page, 'the chart: a point per generation, the night without backups, the failed run and the drill', async () => {
    // (The legend draws the same marks, without a generation's data.)
    const points = await frame.locator('g.pt[data-stamp]').count();
    if (points !== stamps.length) throw new Error(`${points} points for ${stamps.length} generations`);
    const full = await frame.locator('g.pt.full[data-stamp]').count();
    if (full !== 2) throw new Error(`${full} full backups marked, not 2`);
    const gaps = await frame.locator('rect.gap').count();
    if (gaps < 1) throw new Error('no gap is highlighted');
    const nightTitle = await frame.locator('rect.gap title').first().textContent();
    if (!/^No backup for 13h/.test(nightTitle ?? '')) throw new Error(`the first gap says "${nightTitle}"`);
    if ((await frame.locator('g.run.failed[data-command]').count()) !== 1) throw new Error('the failed backup is not drawn');
    if ((await frame.locator('g.run.drill.ok[data-command]').count()) !== 1) throw new Error('the drill is not drawn');
    const failedTitle = await frame.locator('g.run.failed[data-command] title').textContent();
    if (!/backup FAILED[\s\S]*disk holding \/srv\/backups is full/.test(failedTitle ?? '')) throw new Error(`the failed run says "${failedTitle}"`);
  });

  await step(page, 'the status bar: the last run was fine (the failure was cleared by the next backup)', async () => {
    const item = page
      .locator('.statusbar-item')
      .filter({ hasText: /Backup .*ago/ })
      .first();
    await item.waitFor({ timeout: 10_000 });
    if (/failed/.test(await item.innerText())) throw new Error(`the status bar says "${await item.innerText()}"`);
  });

  await step(page, `a click on the first full backup's point selects its row (${firstLabel}) in the Backups view`, async () => {
    await frame.locator(`g.pt[data-stamp="${first}"]`).click();
    const selected = sidebar.locator('.monaco-list-row.selected');
    await until(
      async () => (await selected.count()) > 0 && (await selected.first().innerText()).replace(/\s+/g, ' ').trim().startsWith(firstLabel),
      async () => `the selected row is "${(await selected.count()) ? await selected.first().innerText() : 'none'}"`,
      10_000,
    );
    const details = frame.locator('#details');
    await details.waitFor({ state: 'visible', timeout: 5_000 });
    const text = await frame.locator('#details-text').textContent();
    if (!text?.startsWith('Full backup of main')) throw new Error(`the details say "${text}"`);
    if (!(await frame.locator('#restore').isVisible())) throw new Error('no Restore… button');
  });

  const dir = process.env.PLONE_BACKUP_UI_SCREENSHOT_DIR;
  if (dir) {
    // Without code-server's own notifications (forwarded ports), and only the part that has something to show.
    await driver.runCommand('Notifications: Clear All Notifications');
    await page.mouse.move(1270, 790);
    await page.waitForTimeout(300);
    const file = path.join(dir, 'screenshot-history.png');
    await page.screenshot({ path: file, clip: { x: 0, y: 0, width: 1280, height: 530 } });
    process.stderr.write(`[ui] screenshot: ${file}\n`);
  }
  process.stderr.write(`[ui] done; the screen at the end:\n  ${await seen(page)}\n`);
  return 0;
}

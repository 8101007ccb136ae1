// UI test: drives the workbench like a person. Opens the Plone Backup view on a
// sample deployment with a few older backups, runs "Plone Backup: Back Up Now"
// from the command palette, waits for the new generation to appear in the tree,
// and saves a screenshot (media/screenshot-backups.png, shown by the README).
//
//   npm run build && npx tsc -p tsconfig.test.json
//   node scripts/vscode/run-offline.mjs --ui test/extension/ui/backup-now.mjs
//
// PLONE_BACKUP_UI_SCREENSHOT=FILE saves the screenshot elsewhere (the test run
// does, so that running the tests does not rewrite the committed picture).
import path from 'node:path';
import { engine, oneLine, repo, widenSidebar, workbench } from './lib/ui.mjs';

const HOUR = 3600_000;
const ago = (ms) => () => new Date(Date.now() - ms);

/** A sample site with a full backup two days old, incrementals since, and a snapshot. */
async function makeSample(workspace) {
  const file = path.join(workspace, 'var/filestorage/Data.fs');
  const blobDir = path.join(workspace, 'var/blobstorage');
  const site = await engine.SampleSite.create({ file, blobDir });
  await site.addDocument('Front page', undefined, '/ admin');
  await site.uploadFile('annual-report.pdf', Buffer.alloc(40_000, 1));
  await site.addDocument('About us');
  await site.close();
  const dep = await engine.discoverDeployment(workspace);
  await engine.backupDeployment(dep, 'fullbackup', { now: ago(50 * HOUR) });
  const steps = [
    [(s) => s.addDocument('News: spring opening'), 'backup', 26 * HOUR],
    [(s) => s.uploadFile('team-photo.jpg', Buffer.alloc(120_000, 2), undefined, '/ editor'), 'snapshot', 7 * HOUR],
    [(s) => s.addDocument('Events', undefined, '/ editor'), 'backup', 3 * HOUR],
  ];
  for (const [change, kind, when] of steps) {
    const s = await engine.SampleSite.open({ file, blobDir });
    await change(s);
    await s.close();
    await engine.backupDeployment(dep, kind, { now: ago(when) });
  }
  // Something new for "Back Up Now" to back up.
  const s = await engine.SampleSite.open({ file, blobDir });
  await s.addDocument('Contact', undefined, '/ editor');
  await s.close();
}

export default async function run(driver) {
  const { page, workspace } = driver;
  const shot = process.env.PLONE_BACKUP_UI_SCREENSHOT || path.join(repo, 'media/screenshot-backups.png');
  await makeSample(workspace);

  // The view: opening it activates the extension, which finds the deployment.
  await driver.openActivity('Plone Backup');
  const { rows, toasts } = workbench(page);
  await rows.filter({ hasText: 'Snapshots' }).first().waitFor({ timeout: 20_000 });
  const before = await driver.listRows('.part.sidebar');
  // Generation rows say how old they are; so does the Last runs row, which is no generation.
  const generations = (list) => list.filter((t) => / ago/.test(t) && !t.startsWith('Last runs'));
  if (generations(before).length !== 4) throw new Error(`expected 4 generations before, saw:\n${before.join('\n')}`);

  // Wider side bar, so that the descriptions show.
  await widenSidebar(page);

  await driver.runCommand('Plone Backup: Back Up Now');
  const fresh = rows.filter({ hasText: 'less than a minute ago' });
  await fresh.first().waitFor({ timeout: 30_000 });
  const after = await driver.listRows('.part.sidebar');
  if (generations(after).length !== 5) throw new Error(`expected 5 generations after, saw:\n${after.join('\n')}`);
  const text = oneLine(await fresh.first().innerText());
  if (!/incremental/.test(text) || !/Added Contact/.test(text)) throw new Error(`the new generation reads "${text}"`);
  // The notification that says what was made.
  await toasts.filter({ hasText: 'Backed up' }).first().waitFor({ timeout: 10_000 });
  // The progress notification lingers a moment after the work is done.
  await toasts.filter({ hasText: 'Cancel' }).first().waitFor({ state: 'detached', timeout: 10_000 });
  await page.mouse.move(640, 400);
  await page.waitForTimeout(300);
  await driver.screenshot(shot);
  process.stderr.write(`[ui] the tree after Back Up Now:\n  ${after.join('\n  ').replace(/\n(?!  )/g, ' ')}\n`);
  return 0;
}

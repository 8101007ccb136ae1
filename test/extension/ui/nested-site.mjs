// UI test: a site below the workspace folder (issue 15). A cookieplone project
// is opened at its top: the site lives in backend/instance/ (var/filestorage/
// Data.fs and var/blobstorage there), nothing is set in the settings. The view
// finds it, "Back Up Now" from the palette backs it up into its own var/, the
// notification names it `<folder>/backend/instance`, and the tree lists the backup.
//
//   npm run build && npx tsc -p tsconfig.test.json
//   node scripts/vscode/run-offline.mjs --ui test/extension/ui/nested-site.mjs
import fs from 'node:fs';
import path from 'node:path';
import { engine, localIn, ls, seen, step, until, oneLine } from './lib/ui.mjs';

export default async function run(driver) {
  const { page, workspace } = driver;
  const instance = path.join(workspace, 'backend/instance');
  const file = path.join(instance, 'var/filestorage/Data.fs');
  const blobDir = path.join(instance, 'var/blobstorage');
  const backups = path.join(instance, 'var/backups');
  const name = `${path.basename(workspace)}/backend/instance`;
  const label = (stamp) => (driver.tz ? localIn(driver.tz, engine.parseStamp(stamp)) : engine.compactTime(stamp));

  // The rest of a cookieplone project, around the site.
  for (const d of ['frontend', 'backend']) fs.mkdirSync(path.join(workspace, d), { recursive: true });
  fs.writeFileSync(path.join(workspace, 'frontend/package.json'), '{ "name": "frontend", "private": true }\n');
  fs.writeFileSync(path.join(workspace, 'backend/pyproject.toml'), '[project]\nname = "backend"\n');
  fs.writeFileSync(path.join(workspace, 'README.md'), '# A Plone project\n');
  const site = await engine.SampleSite.create({ file, blobDir });
  await site.addDocument('Front page', undefined, '/ admin');
  await site.uploadFile('annual-report.pdf', Buffer.alloc(40_000, 1));
  await site.addDocument('About us');
  await site.close();

  const sidebar = page.locator('.part.sidebar');
  const rows = sidebar.locator('.monaco-list-row');
  await step(page, 'the view finds the site in backend/instance', async () => {
    await driver.openActivity('Plone Backup');
    // The welcome of a site without backups, not "No Plone deployment was found".
    await sidebar.getByText('This site has no backup yet').first().waitFor({ timeout: 20_000 });
  });

  const stamp = await step(page, 'Back Up Now from the palette backs it up', async () => {
    await driver.runCommand('Plone Backup: Back Up Now');
    const toasts = page.locator('.notifications-toasts .notification-toast');
    const done = toasts.filter({ hasText: `Backed up ${name}` }).first();
    await done.waitFor({ timeout: 30_000 });
    const said = oneLine(await done.innerText());
    if (!/a full backup of 5 transactions/.test(said) || !/1 blob file/.test(said)) throw new Error(`the notification reads "${said}"`);
    const full = ls(backups).filter((n) => n.endsWith('.fsz'));
    if (full.length !== 1) throw new Error(`expected one full backup in backend/instance/var/backups, saw [${ls(backups)}]`);
    const st = full[0].replace(/\.fsz$/, '');
    const gen = path.join(instance, 'var/blobstoragebackups', `blobstorage.${st}.json`);
    if (!fs.existsSync(gen)) throw new Error(`no blob generation ${path.relative(workspace, gen)}: [${ls(path.dirname(gen))}]`);
    // Nothing beside the project: no var/ at the top, no settings written.
    for (const stray of ['var', '.vscode/settings.json']) {
      if (fs.existsSync(path.join(workspace, stray))) throw new Error(`${stray} was created at the top of the workspace`);
    }
    return st;
  });

  await step(page, `the tree lists the backup of ${label(stamp)}`, async () => {
    const row = rows.filter({ hasText: label(stamp) }).first();
    await until(async () => (await row.count()) > 0, `no row reads ${label(stamp)}`, 15_000);
    const text = oneLine(await row.innerText());
    if (!/full/.test(text) || !/5 transactions/.test(text)) throw new Error(`the backup's row reads "${text}"`);
    const texts = (await driver.listRows('.part.sidebar')).map(oneLine);
    if (!texts.some((t) => /^Backups ?1 generation in var\/backups/.test(t))) throw new Error(`no "Backups: 1 generation in var/backups" row:\n    ${texts.join('\n    ')}`);
  });

  process.stderr.write(`[ui] done; the screen at the end:\n  ${await seen(page)}\n`);
  return 0;
}

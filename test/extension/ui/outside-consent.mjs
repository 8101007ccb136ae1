// UI test: the consent for paths outside the workspace folder, clicked through the
// real modal dialog (no test hooks: the runner removes PLONE_BACKUP_TEST_HOOKS for
// --ui runs). A sample site whose plone-backup.json puts its backups in a folder
// beside the workspace (../outside): "Back Up Now" from the palette shows one
// dialog naming those folders; Cancel writes nothing there; Allow backs up there;
// the next "Back Up Now" asks nothing (remembered for the workspace).
//
//   npm run build && npx tsc -p tsconfig.test.json
//   node scripts/vscode/run-offline.mjs --ui test/extension/ui/outside-consent.mjs
import fs from 'node:fs';
import path from 'node:path';
import { answerDialog, engine, ls, workbench } from './lib/ui.mjs';

export default async function run(driver) {
  const { page, workspace } = driver;
  const outside = path.join(path.dirname(workspace), 'outside');
  fs.mkdirSync(outside, { recursive: true });
  const file = path.join(workspace, 'var/filestorage/Data.fs');
  const blobDir = path.join(workspace, 'var/blobstorage');
  const site = await engine.SampleSite.create({ file, blobDir });
  await site.addDocument('Front page', undefined, '/ admin');
  await site.uploadFile('report.pdf', Buffer.alloc(20_000, 1));
  await site.close();
  fs.writeFileSync(
    path.join(workspace, 'plone-backup.json'),
    JSON.stringify({ storages: [{ name: 'main', backups: '../outside/backups', blobBackups: '../outside/blobstoragebackups' }] }, null, 2),
  );

  await driver.openActivity('Plone Backup');
  const sidebar = page.locator('.part.sidebar');
  await sidebar.getByText('This site has no backup yet').first().waitFor({ timeout: 20_000 });

  const { dialog } = workbench(page);
  const askAndAnswer = async (button) => {
    await driver.runCommand('Plone Backup: Back Up Now');
    const text = await answerDialog(
      page,
      ['writes and deletes outside the folder', 'plone-backup.json', path.join(outside, 'backups'), path.join(outside, 'blobstoragebackups')],
      button,
    );
    if (text.includes(file)) throw new Error(`the dialog named Data.fs, which is inside: ${text}`);
    return text;
  };

  // Cancel: nothing is written outside.
  const asked = await askAndAnswer('Cancel');
  await page.waitForTimeout(1500);
  if (ls(outside).length) throw new Error(`Cancel wrote outside: ${ls(outside)}`);

  // Allow: the backup is made there.
  await askAndAnswer('Allow');
  const toasts = page.locator('.notifications-toasts .notification-toast');
  await toasts.filter({ hasText: 'Backed up' }).first().waitFor({ timeout: 30_000 });
  if (!ls(path.join(outside, 'backups')).some((n) => n.endsWith('.fsz'))) throw new Error(`no backup in ${outside}/backups: ${ls(path.join(outside, 'backups'))}`);

  // Remembered: a second backup asks nothing.
  const s = await engine.SampleSite.open({ file, blobDir });
  await s.addDocument('News');
  await s.close();
  await driver.runCommand('Plone Backup: Back Up Now');
  const deadline = Date.now() + 30_000;
  while (ls(path.join(outside, 'backups')).filter((n) => n.endsWith('.deltafsz')).length === 0) {
    if (await dialog.count()) throw new Error(`asked again after Allow: ${await dialog.first().innerText()}`);
    if (Date.now() > deadline) throw new Error(`the second backup did not arrive: ${ls(path.join(outside, 'backups'))}`);
    await page.waitForTimeout(200);
  }
  if (await dialog.count()) throw new Error('a dialog is showing after the remembered backup');
  process.stderr.write(`[ui] the consent dialog read: ${asked}\n`);
  return 0;
}

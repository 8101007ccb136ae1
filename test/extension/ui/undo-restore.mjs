// UI test: a restore undone, and what it kept cleaned up (issue 15, item 5). A
// sample site with two backups (a full one, then an incremental) and a change
// made since, not backed up:
//
//   1. Restore… from the palette, the older backup (the full one), Restore in
//      the modal: the full backup's row is marked "● live";
//   2. [Undo] on the notification, "Undo the restore …?" in the modal, Undo:
//      Data.fs and the blobstorage are the state before the restore (md5), the
//      restored state is kept beside it in turn (one "Kept copies" row, one
//      kept state), and no generation is marked "● live" (the live Data.fs is
//      no backup: the change since was never backed up);
//   3. the inline Delete Kept Copies… on the "Kept copies" row, Delete in the
//      modal: no *.before-restore-* is left beside Data.fs or the blobstorage,
//      and the row is gone;
//   4. "Plone Backup: Undo Last Restore" from the palette with nothing kept:
//      it says there is no restore to undo, and nothing changes.
//
//   npm run build && npx tsc -p tsconfig.test.json
//   node scripts/vscode/run-offline.mjs --ui test/extension/ui/undo-restore.mjs
import path from 'node:path';
import { answerDialog, engine, localIn, ls, md5, oneLine, openRestore, pickRow, seen, step, treeDiff, treeMd5, until, widenSidebar, workbench } from './lib/ui.mjs';

export default async function run(driver) {
  const { page, workspace } = driver;
  const name = path.basename(workspace);
  const file = path.join(workspace, 'var/filestorage/Data.fs');
  const blobDir = path.join(workspace, 'var/blobstorage');
  // The extension's clock: the runner's zone for code-server, else this process's (the same one).
  const label = (stamp) => (driver.tz ? localIn(driver.tz, engine.parseStamp(stamp)) : engine.localTime(stamp));
  const rowLabel = (stamp) => engine.compactTime(stamp);
  const state = () => ({ dataFs: md5(file), blobs: treeMd5(blobDir) });
  const keptNames = () => [...ls(path.dirname(file)), ...ls(path.dirname(blobDir))].filter((n) => n.includes('.before-restore-'));
  /** The kept Data.fs files (not their indexes) and blob trees. */
  const keptOf = () => {
    const kept = keptNames();
    return { files: kept.filter((n) => n.startsWith('Data.fs.before-restore-') && !n.endsWith('.index')), blobs: kept.filter((n) => n.startsWith('blobstorage.before-restore-')) };
  };

  // Two backups more than a week old (rows read "yyyy-mm-dd hh:mm"), then a change not backed up.
  const site = await engine.SampleSite.create({ file, blobDir });
  await site.addDocument('Front page', undefined, '/ admin');
  const report = await site.uploadFile('annual-report.pdf', Buffer.alloc(30_000, 1));
  await site.close();
  const dep = await engine.discoverDeployment(workspace);
  const [r1] = await engine.backupDeployment(dep, 'fullbackup', { now: () => new Date('2025-06-10T08:30:00Z') });
  const b1 = { stamp: r1.filestorage.stamp, ...state() };
  let s = await engine.SampleSite.open({ file, blobDir });
  await s.uploadFile('annual-report.pdf', Buffer.alloc(32_000, 2), report);
  await s.close();
  const [r2] = await engine.backupDeployment(dep, 'backup', { now: () => new Date('2025-06-11T08:30:00Z') });
  const b2 = { stamp: r2.filestorage.stamp };
  s = await engine.SampleSite.open({ file, blobDir });
  await s.addDocument('Draft: not backed up yet');
  await s.uploadFile('logo.png', Buffer.alloc(5_000, 3));
  await s.close();
  const before = state();
  if (before.dataFs === b1.dataFs || !treeDiff(b1.blobs, before.blobs)) throw new Error('the change since the backups did not change Data.fs and the blobstorage');

  const { rows, dialog, toasts } = workbench(page);
  const keptRow = rows.filter({ hasText: 'Kept copies' });
  const rowTexts = async () => (await driver.listRows('.part.sidebar')).map(oneLine);
  const answer = (want, button) => answerDialog(page, want, button);

  await step(page, 'the view shows the two backups', async () => {
    await driver.openActivity('Plone Backup');
    await rows
      .filter({ hasText: rowLabel(b2.stamp) })
      .first()
      .waitFor({ timeout: 20_000 });
    await rows
      .filter({ hasText: rowLabel(b1.stamp) })
      .first()
      .waitFor({ timeout: 5_000 });
    await widenSidebar(page);
    const texts = await rowTexts();
    if (texts.some((t) => t.includes('● live'))) throw new Error(`a row is marked live though Data.fs changed since the backups:\n    ${texts.join('\n    ')}`);
  });

  const restored = `Restored ${name} to the backup of ${label(b1.stamp)}`;
  await step(page, `Restore…, the older backup (${label(b1.stamp)}), Restore: its row is marked live`, async () => {
    await openRestore(driver, page, name);
    await pickRow(page, label(b1.stamp), label(b1.stamp).slice(0, 16));
    await answer(`Restore ${name} to the backup of ${label(b1.stamp)}?`, 'Restore');
    await toasts.filter({ hasText: restored }).first().waitFor({ timeout: 30_000 });
    const got = state();
    if (got.dataFs !== b1.dataFs) throw new Error(`Data.fs is ${got.dataFs}, not the state of the backup of ${label(b1.stamp)} (${b1.dataFs})`);
    const diff = treeDiff(b1.blobs, got.blobs);
    if (diff) throw new Error(`the blobstorage is not the state of the backup: ${diff}`);
    if (keptOf().files.length !== 1 || keptOf().blobs.length !== 1) throw new Error(`expected Data.fs and the blobstorage kept once each, saw [${keptNames()}]`);
    // The tree follows: the restored backup is the live one, and the kept state is listed.
    const liveRow = rows.filter({ hasText: rowLabel(b1.stamp) }).filter({ hasText: '● live' });
    await until(
      async () => (await liveRow.count()) > 0,
      async () => `the row of ${rowLabel(b1.stamp)} is not marked "● live":\n    ${(await rowTexts()).join('\n    ')}`,
      15_000,
    );
    await until(
      async () => (await keptRow.count()) > 0,
      async () => `no "Kept copies" row after the restore:\n    ${(await rowTexts()).join('\n    ')}`,
      15_000,
    );
  });

  await step(page, '[Undo] on the notification, Undo in the modal: the state before the restore is back', async () => {
    const toast = toasts.filter({ hasText: restored }).first();
    await toast.getByRole('button', { name: 'Undo', exact: true }).click();
    const asked = await answer(`Undo the restore of `, 'Undo');
    if (!asked.includes(` in ${name}?`)) throw new Error(`the undo question does not name ${name}: ${asked}`);
    // The disk is what counts: the state before the restore is back. (The notification that says so
    // may already have been hidden by the workbench when a slow machine gets here.)
    await until(
      async () => state().dataFs === before.dataFs,
      async () => `Data.fs is not back to the state before the restore 30 s after Undo (it is ${state().dataFs}, before it was ${before.dataFs})`,
      30_000,
      200,
    );
    await toasts
      .filter({ hasText: `${name} is back to the state before the restore of` })
      .first()
      .waitFor({ timeout: 5_000 })
      .catch(() => process.stderr.write('[ui] (the "is back" notification was not on screen by then)\n'));
    const got = state();
    if (got.dataFs !== before.dataFs) throw new Error(`Data.fs is ${got.dataFs}, not the state before the restore (${before.dataFs}; the restored one was ${b1.dataFs})`);
    const diff = treeDiff(before.blobs, got.blobs);
    if (diff) throw new Error(`the blobstorage is not the state before the restore: ${diff}`);
    // The undone restore is kept in turn: one Data.fs (the restored state) and one blobstorage beside the live ones.
    const { files: keptFs, blobs: keptBlobs } = keptOf();
    if (keptFs.length !== 1 || keptBlobs.length !== 1) throw new Error(`expected one kept Data.fs and one kept blobstorage (the undone restore), saw [${keptNames()}]`);
    const keptMd5 = md5(path.join(path.dirname(file), keptFs[0]));
    if (keptMd5 !== b1.dataFs) throw new Error(`the kept ${keptFs[0]} is ${keptMd5}, not the restored state (${b1.dataFs})`);
  });

  await step(page, 'the view: one kept state, and no generation marked "● live"', async () => {
    await until(
      async () => {
        const texts = await rowTexts();
        return texts.some((t) => /^Kept copies\s*1 · /.test(t)) && !texts.some((t) => t.includes('● live'));
      },
      async () => `expected a "Kept copies 1 · …" row and no "● live" (the live Data.fs is no backup):\n    ${(await rowTexts()).join('\n    ')}`,
      15_000,
    );
    // The one kept state: the restore that was undone.
    // Expanded (again, if a refresh of the view, e.g. the Last runs row after the run log
    // changed, re-rendered it collapsed right after the click).
    const row = keptRow.first();
    await until(
      async () => {
        if ((await row.getAttribute('aria-expanded')) === 'false') await row.click();
        return (await rowTexts()).filter((t) => t.startsWith('before the restore of ')).length === 1;
      },
      async () => `expected one "before the restore of …" row under Kept copies:\n    ${(await rowTexts()).join('\n    ')}`,
      10_000,
    );
  });

  await step(page, 'Delete Kept Copies… on the "Kept copies" row, Delete: nothing kept is left', async () => {
    const row = keptRow.first();
    await row.hover();
    const action = row.locator('.actions .action-label[aria-label="Delete Kept Copies…"]');
    await action.waitFor({ timeout: 5_000 });
    await action.click();
    await answer(`Delete the state kept by restores in ${name}`, 'Delete');
    await toasts
      .filter({ hasText: `Deleted 1 kept state of ${name}` })
      .first()
      .waitFor({ timeout: 20_000 });
    if (keptNames().length) throw new Error(`left beside Data.fs or the blobstorage: [${keptNames()}]`);
    const got = state();
    if (got.dataFs !== before.dataFs || treeDiff(before.blobs, got.blobs)) throw new Error('deleting the kept copies changed the live Data.fs or blobstorage');
    await until(
      async () => (await keptRow.count()) === 0,
      async () => `the "Kept copies" row is still there:\n    ${(await rowTexts()).join('\n    ')}`,
      15_000,
    );
  });

  await step(page, 'Undo Last Restore from the palette, nothing kept: there is no restore to undo', async () => {
    await driver.runCommand('Plone Backup: Undo Last Restore');
    await toasts
      .filter({ hasText: `${name}: there is no restore to undo` })
      .first()
      .waitFor({ timeout: 15_000 });
    if (await dialog.count()) throw new Error(`a dialog asks: ${oneLine(await dialog.first().innerText())}`);
    const got = state();
    if (got.dataFs !== before.dataFs || treeDiff(before.blobs, got.blobs) || keptNames().length) throw new Error('Undo Last Restore with nothing kept changed the disk');
  });

  process.stderr.write(`[ui] done; the screen at the end:\n  ${await seen(page)}\n`);
  return 0;
}

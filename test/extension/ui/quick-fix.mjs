// UI test: a blob file deleted by hand, noticed and put back through the
// Problems panel's Quick Fix (issue 15, item 4). A sample site with one
// backup, the Plone Backup view and the Problems panel open:
//
//   1. the newest blob file of the live blobstorage is deleted (as `rm` would):
//      within seconds, without a Data.fs write, the Problems panel shows the
//      missing blob entry (naming the file, pointing at the Quick Fix) and the
//      status bar counts one error;
//   2. a click on the entry opens its read-only report, the cursor on the
//      entry's line, the focus left on the entry; its row shows the lightbulb,
//      and Ctrl+. there opens the Quick Fix menu: "Restore the missing blob file
//      from the backup of <time>" and "Show in Backups View"; the first is
//      chosen, Restore in the modal (which names the file);
//   3. the blob file is back, byte-identical; Data.fs is unchanged (md5, inode,
//      size) and so are the other blob files; the Problems entry goes away;
//   4. the blob file deleted again, Ctrl+. in the report itself, on the entry's
//      line, as the report's own second line says: the Quick Fix is offered
//      there too, or the report does not promise it.
//
// What works where, in VS Code 1.100 (code-server): the Problems panel offers
// the fixes (the lightbulb on the entry's row, Ctrl+. on the selected entry).
// The report editor does not: it is read-only, and VS Code's Quick Fix needs a
// writable editor (no lightbulb, Ctrl+. does nothing, "Quick Fix..." is not in
// the palette; microsoft/vscode#299732). Step 4 is the spec for that.
//
//   npm run build && npx tsc -p tsconfig.test.json
//   node scripts/vscode/run-offline.mjs --ui test/extension/ui/quick-fix.mjs
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { answerDialog, engine, localIn, md5, oneLine, seen, step, treeDiff, treeMd5, until } from './lib/ui.mjs';

export default async function run(driver) {
  const { page, workspace } = driver;
  const name = path.basename(workspace);
  const file = path.join(workspace, 'var/filestorage/Data.fs');
  const blobDir = path.join(workspace, 'var/blobstorage');
  // The extension's clock: the runner's zone for code-server, else this process's (the same one).
  const label = (stamp) => (driver.tz ? localIn(driver.tz, engine.parseStamp(stamp)) : engine.localTime(stamp));

  const site = await engine.SampleSite.create({ file, blobDir });
  await site.addDocument('Front page', undefined, '/ admin');
  await site.uploadFile('annual-report.pdf', crypto.randomBytes(30_000));
  await site.uploadFile('logo.png', crypto.randomBytes(5_000));
  await site.addDocument('News');
  await site.close();
  const dep = await engine.discoverDeployment(workspace);
  const [r] = await engine.backupDeployment(dep, 'backup');
  const stamp = r.filestorage.stamp;
  // The newest blob file: the one of the newest transaction (its name is the tid, in hex).
  const blobs = Object.keys(treeMd5(blobDir)).filter((p) => p.endsWith('.blob'));
  if (blobs.length !== 2) throw new Error(`expected the sample's two blob files, saw [${blobs}]`);
  const rel = blobs.sort((a, b) => (path.basename(a) < path.basename(b) ? -1 : 1)).at(-1);
  const victim = path.join(blobDir, rel);
  const saved = fs.readFileSync(victim);

  const rows = page.locator('.part.sidebar .monaco-list-row');
  const panel = page.locator('.part.panel');
  const markers = panel.locator('.monaco-list-row');
  const entry = markers.filter({ hasText: victim });
  const toasts = page.locator('.notifications-toasts .notification-toast');
  // The Problems panel's Quick Fix menu (a context menu), and the editor's (the action widget).
  const fixMenu = page.locator('.context-view .monaco-menu .action-item');
  const actionWidget = page.locator('.action-widget .monaco-list-row');
  // The editor renders spaces as no-break spaces.
  const shown = async () =>
    (
      await page
        .locator('.part.editor .monaco-editor .view-lines')
        .first()
        .innerText()
        .catch(() => '')
    ).replace(/\u00a0/g, ' ');
  const panelTexts = async () => (await markers.allInnerTexts()).map(oneLine);

  await step(page, 'the view shows the backup; the Problems panel shows no problem', async () => {
    await driver.openActivity('Plone Backup');
    await rows
      .filter({ hasText: engine.compactTime(stamp) })
      .first()
      .waitFor({ timeout: 20_000 });
    await driver.runCommand('View: Toggle Problems');
    await panel.locator('.markers-panel').first().waitFor({ timeout: 10_000 });
    // The live check after the backup has run (it would have shown NO_BACKUP or the like otherwise); give it its time.
    await page.waitForTimeout(3_000);
    const texts = await panelTexts();
    if (texts.length) throw new Error(`the Problems panel is not empty before anything was deleted:\n    ${texts.join('\n    ')}`);
  });

  const before = { stat: fs.statSync(file), md5: md5(file), blobs: treeMd5(blobDir) };
  await step(page, `rm ${rel}: the Problems panel shows the missing blob within seconds`, async () => {
    fs.rmSync(victim);
    const t0 = Date.now();
    await until(
      async () => (await entry.count()) > 0,
      async () => `no Problems entry names ${victim} 20 s after it was deleted`,
      20_000,
      100,
    );
    process.stderr.write(`[ui]   noticed in ${Date.now() - t0} ms\n`);
    const text = oneLine(await entry.first().innerText());
    if (!/Quick Fix/.test(text)) throw new Error(`the entry does not point at the Quick Fix: ${text}`);
    // An error: the status bar's problems item counts it.
    const status = page.locator('.part.statusbar [id="status.problems"]');
    await until(
      async () => /\b1\b/.test((await status.getAttribute('aria-label').catch(() => '')) ?? '') || /Errors: 1\b/.test((await status.innerText().catch(() => '')) ?? ''),
      async () => `the status bar's problems item does not count one error: "${await status.getAttribute('aria-label').catch(() => '?')}"`,
      5_000,
    );
    if (fs.statSync(file).mtimeMs !== before.stat.mtimeMs) throw new Error('Data.fs was written');
  });

  const fixTitle = `Restore the missing blob file from the backup of ${label(stamp)}`;
  /** A click on the entry: its report opens in an editor, the cursor on the entry's line (4); the focus stays on the entry. */
  const openEntry = async () => {
    await entry.first().click();
    await until(
      async () => (await shown()).includes('This is a read-only report') && (await shown()).includes(`blob file: ${victim}`),
      async () => `the report of the entry is not in the editor; it shows:\n    ${(await shown()).split('\n').join('\n    ')}`,
      20_000,
    );
    const cursor = oneLine(
      await page
        .locator('.part.statusbar [id="status.editor.selection"]')
        .innerText()
        .catch(() => ''),
    );
    if (!/^Ln 4\b/.test(cursor)) throw new Error(`the cursor is not on the entry's line (4) of the report: "${cursor}"`);
  };
  await step(page, `open the entry, Ctrl+. in the Problems panel: "${fixTitle}"`, async () => {
    await openEntry();
    // The entry's row shows the lightbulb ("Show fixes"); Ctrl+. on the selected entry opens the same menu.
    await entry.first().locator('.action-label[aria-label="Show fixes"]').waitFor({ timeout: 10_000 });
    await page.keyboard.press('Control+.');
    const fix = fixMenu.filter({ hasText: fixTitle });
    await until(
      async () => (await fix.count()) > 0,
      async () => `the Quick Fix menu does not offer "${fixTitle}"`,
      20_000,
    );
    const offered = (await fixMenu.allInnerTexts()).map(oneLine);
    if (!offered.some((t) => t.startsWith('Show in Backups View'))) throw new Error(`the menu offers no "Show in Backups View": [${offered}]`);
    await fix.first().click();
  });

  await step(page, 'Restore in the modal: the blob file is back, Data.fs unchanged, the entry gone', async () => {
    // The question, naming the blob file.
    await answerDialog(page, [`Restore the missing blob files of the backup of ${label(stamp)} into ${name}?`, path.relative(workspace, victim)], 'Restore');
    await toasts
      .filter({ hasText: `Added 1 missing blob file to ${name}` })
      .first()
      .waitFor({ timeout: 30_000 });
    if (!fs.existsSync(victim)) throw new Error(`${rel} is still missing`);
    if (!fs.readFileSync(victim).equals(saved)) throw new Error(`${rel} is back but not byte-identical`);
    const after = fs.statSync(file);
    if (after.ino !== before.stat.ino || after.size !== before.stat.size || md5(file) !== before.md5) {
      throw new Error(`Data.fs changed (inode ${before.stat.ino} → ${after.ino}, size ${before.stat.size} → ${after.size}, md5 ${before.md5} → ${md5(file)})`);
    }
    // Every blob file as before the rm (the md5s were taken with the file still there): no other file touched.
    const diff = treeDiff(before.blobs, treeMd5(blobDir));
    if (diff) throw new Error(`the blobstorage is not as before the rm: ${diff}`);
    await until(
      async () => (await entry.count()) === 0,
      async () => `the Problems entry is still there 15 s after the restore:\n    ${(await panelTexts()).join('\n    ')}`,
      15_000,
    );
  });

  // The report must not promise a Quick Fix in itself: it points to the Problems panel, where they are. VS Code offers no Quick Fix in a read-only editor (its Quick Fix
  // command needs a writable one: no lightbulb, Ctrl+. does nothing, "Quick Fix..." is not in the palette;
  // microsoft/vscode#299732), so either the report offers it some other way or it must not promise it.
  await step(page, 'the report keeps its word: Ctrl+. on the entry in the report offers the Quick Fix', async () => {
    fs.rmSync(victim);
    await until(
      async () => (await entry.count()) > 0,
      async () => `no Problems entry names ${victim} 20 s after it was deleted again`,
      20_000,
      100,
    );
    await openEntry();
    await page
      .locator('.part.editor .monaco-editor .view-line')
      .filter({ hasText: /^error:/ })
      .first()
      .click();
    await page.keyboard.press('Control+.');
    const offered = await until(
      async () => (await actionWidget.filter({ hasText: fixTitle }).count()) > 0 || (await fixMenu.filter({ hasText: fixTitle }).count()) > 0,
      () => false,
      5_000,
    ).catch(() => false);
    if (!offered) {
      // Said of the report itself (not of the Problems panel, where the fixes are).
      const promise = (await shown()).split('\n').find((l) => /Ctrl\+\.|lightbulb/.test(l) && !/Problems panel/.test(l));
      const bulb = await page.locator('.part.editor .monaco-editor .lightBulbWidget:visible').count();
      if (promise)
        throw new Error(
          `Ctrl+. on the entry's line of the report offers nothing (lightbulb ${bulb ? 'shown' : 'not shown either'}; the report is a read-only editor), yet the report says: "${promise.trim()}"`,
        );
    }
    await page.keyboard.press('Escape');
  });

  process.stderr.write(`[ui] done; the screen at the end:\n  ${await seen(page)}\n`);
  return 0;
}

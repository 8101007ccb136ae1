// UI test: restoring, as a person in Berlin does it (issue 15). code-server, and
// so the extension host, runs in Europe/Berlin (`export const tz` below; the
// runner passes it on as TZ). A sample site with four backups at known times,
// one of them in summer time, and a change made since:
//
//   1. the tree shows each generation at its Berlin time, "CET" or "CEST";
//   2. Restore… from the palette, Enter on the focused first item (the newest),
//      Cancel in the modal dialog: nothing changes on the disk;
//   3. Restore…, the older generation found by typing its local time into the
//      quick pick's filter, Restore in the dialog: Data.fs and the blobstorage
//      are that backup's state;
//   4. Restore…, "Type a date…", a Berlin time one minute after an older backup:
//      the preview names that backup in Berlin time, Enter, Restore: its state.
//      (The bug the issue reports: the typed time was read as UTC, two hours
//      later in summer, so the newer backup in between was restored.)
//
// The expected states are what the engine's own recover gives for each backup
// (checked against the Data.fs at the time of the backup); the expected times
// are computed for Europe/Berlin with Intl, whatever zone this process runs in.
//
//   npm run build && npx tsc -p tsconfig.test.json
//   node scripts/vscode/run-offline.mjs --ui test/extension/ui/restore-journeys.mjs
import fs from 'node:fs';
import path from 'node:path';
import { answerDialog, engine, localIn, ls, md5, oneLine, openRestore, pickRow, seen, step, treeDiff, treeMd5, until, workbench } from './lib/ui.mjs';

export const tz = 'Europe/Berlin';

/** The backups, in UTC; their Berlin times are below (in `localIn`) and checked against these words. */
const BACKUPS = [
  { kind: 'fullbackup', at: '2025-03-28T10:00:00Z', berlin: '2025-03-28 11:00:00 CET', change: (s) => s.addDocument('Front page', undefined, '/ admin') },
  {
    kind: 'backup',
    at: '2025-06-10T08:30:00Z',
    berlin: '2025-06-10 10:30:00 CEST',
    change: async (s, ctx) => (ctx.report = await s.uploadFile('annual-report.pdf', Buffer.alloc(30_000, 1))),
  },
  { kind: 'backup', at: '2025-06-10T09:45:00Z', berlin: '2025-06-10 11:45:00 CEST', change: (s, ctx) => s.uploadFile('annual-report.pdf', Buffer.alloc(32_000, 2), ctx.report) },
  { kind: 'backup', at: '2025-11-20T09:15:00Z', berlin: '2025-11-20 10:15:00 CET', change: (s) => s.addDocument('News: winter opening hours') },
];

async function makeSample(workspace) {
  const file = path.join(workspace, 'var/filestorage/Data.fs');
  const blobDir = path.join(workspace, 'var/blobstorage');
  const site = await engine.SampleSite.create({ file, blobDir });
  await site.close();
  const dep = await engine.discoverDeployment(workspace);
  const ctx = {};
  const states = [];
  for (const b of BACKUPS) {
    const s = await engine.SampleSite.open({ file, blobDir });
    await b.change(s, ctx);
    await s.close();
    const when = new Date(b.at);
    const [r] = await engine.backupDeployment(dep, b.kind, { now: () => when });
    const label = localIn(tz, when);
    if (label !== b.berlin) throw new Error(`the test's own Berlin time of ${b.at} is "${label}", not "${b.berlin}"`);
    states.push({ ...b, stamp: r.filestorage.stamp, label, dataFs: md5(file), blobs: treeMd5(blobDir) });
  }
  // What the engine's own restore gives for each backup: recovered into a folder of its own.
  const scratch = path.join(path.dirname(workspace), 'expected');
  fs.mkdirSync(scratch, { recursive: true });
  for (const st of states) {
    const rec = await engine.recover({ repository: dep.storages[0].dirs.backups, output: path.join(scratch, `${st.stamp}.fs`), date: st.stamp });
    if (rec.md5 !== st.dataFs || md5(path.join(scratch, `${st.stamp}.fs`)) !== st.dataFs) {
      throw new Error(`the engine recovers ${st.stamp} as ${rec.md5}, but Data.fs was ${st.dataFs} when it was backed up`);
    }
  }
  // A change since the newest backup: a restore would replace something.
  const s = await engine.SampleSite.open({ file, blobDir });
  await s.addDocument('Draft: not backed up yet');
  await s.close();
  return { file, blobDir, states };
}

/** Data.fs, the blobstorage and the folders around them, to compare before and after. */
function diskState(file, blobDir) {
  return {
    dataFs: md5(file),
    blobs: treeMd5(blobDir),
    filestorage: ls(path.dirname(file)),
    varDir: ls(path.dirname(blobDir)),
  };
}

export default async function run(driver) {
  const { page, workspace } = driver;
  if (driver.tz !== tz) throw new Error(`the runner did not put code-server in ${tz} (driver.tz is ${driver.tz})`);
  const name = path.basename(workspace);
  const { file, blobDir, states } = await makeSample(workspace);
  const [, b2, b3, b4] = states;
  const { rows, quick, quickInput, quickRows, focusedRow, toasts } = workbench(page);

  await step(page, 'the tree shows the generations in Berlin time', async () => {
    await driver.openActivity('Plone Backup');
    // Rows are compact: a backup older than a week reads "2025-06-10 10:30 CEST" (the minute and the zone).
    const rowLabel = (label) => `${label.slice(0, 16)} ${label.split(' ').at(-1)}`;
    await rows
      .filter({ hasText: rowLabel(b4.label) })
      .first()
      .waitFor({ timeout: 20_000 });
    const texts = (await driver.listRows('.part.sidebar')).map(oneLine);
    for (const st of states) {
      if (!texts.some((t) => t.startsWith(rowLabel(st.label)))) throw new Error(`no row reads "${rowLabel(st.label)}" (the backup of ${st.at})`);
    }
    // Not the UTC time with a zone name pasted on.
    const utc = b2.at.replace('T', ' ').replace('Z', '').slice(0, 16);
    if (texts.some((t) => t.includes(utc))) throw new Error(`a row shows ${utc}, the UTC time of the backup of ${b2.label}`);
  });

  const restore = () => openRestore(driver, page, name);
  const answer = (want, button) => answerDialog(page, want, button);
  const restoredTo = async (st, said) => {
    await toasts.filter({ hasText: said }).first().waitFor({ timeout: 30_000 });
    const got = diskState(file, blobDir);
    if (got.dataFs !== st.dataFs) throw new Error(`Data.fs is ${got.dataFs}, not the state of the backup of ${st.label} (${st.dataFs})`);
    const diff = treeDiff(st.blobs, got.blobs);
    if (diff) throw new Error(`the blobstorage is not the state of the backup of ${st.label}: ${diff}`);
    return got;
  };

  await step(page, 'Restore…, Enter on the newest, Cancel: nothing changes', async () => {
    const before = diskState(file, blobDir);
    await restore();
    // The newest generation is the first item, and focused: Enter takes it.
    await focusedRow.filter({ hasText: b4.label }).waitFor({ timeout: 10_000 });
    const first = oneLine((await quickRows.allInnerTexts()).find((t) => /\d{4}-\d\d-\d\d/.test(t)) ?? '');
    if (!first.includes(b4.label)) throw new Error(`the first generation offered is "${first}", not the newest (${b4.label})`);
    await page.keyboard.press('Enter');
    await answer(`Restore ${name} to the backup of ${b4.label}?`, 'Cancel');
    await page.waitForTimeout(1500);
    const after = diskState(file, blobDir);
    if (after.dataFs !== before.dataFs) throw new Error(`Cancel changed Data.fs (${before.dataFs} → ${after.dataFs})`);
    const diff = treeDiff(before.blobs, after.blobs);
    if (diff) throw new Error(`Cancel changed the blobstorage: ${diff}`);
    for (const k of ['filestorage', 'varDir']) {
      if (after[k].join() !== before[k].join()) throw new Error(`Cancel changed the folder: [${before[k]}] → [${after[k]}]`);
    }
  });

  await step(page, `Restore…, typing "${b3.label.slice(0, 16)}" into the list, Restore: the state of ${b3.label}`, async () => {
    await restore();
    await pickRow(page, b3.label, b3.label.slice(0, 16));
    await answer(`Restore ${name} to the backup of ${b3.label}?`, 'Restore');
    await restoredTo(b3, `Restored ${name} to the backup of ${b3.label}`);
    const kept = ls(path.dirname(file)).filter((n) => n.startsWith('Data.fs.before-restore-'));
    if (kept.length !== 1) throw new Error(`expected the replaced Data.fs kept once beside it, saw [${ls(path.dirname(file))}]`);
  });

  // One minute after b2, in Berlin: 10:31 CEST is 08:31 UTC, before b3 (09:45 UTC).
  // Read as UTC it would be 10:31 UTC, after b3: b3 would be restored instead.
  const typed = localIn(tz, new Date(new Date(b2.at).getTime() + 60_000), { minutes: true });
  await step(page, `Restore…, Type a date…, "${typed}", Restore: the state of ${b2.label}`, async () => {
    await restore();
    await quickRows.filter({ hasText: 'Type a date' }).first().click();
    // The date box: it says which clock it reads (the zone of the date typed is the preview's to say: CET or CEST).
    await until(
      async () => oneLine((await quick.locator('.quick-input-message').allInnerTexts()).join(' ')).includes('in local time'),
      async () => 'the date box does not say it reads local time',
      10_000,
    );
    await quickInput.fill(typed);
    const preview = `→ the incremental backup of ${b2.label}`;
    await until(
      async () => oneLine((await quick.locator('.quick-input-message').allInnerTexts()).join(' ')).includes(preview),
      async () => `the preview does not read "${preview}…"`,
      10_000,
    );
    await page.keyboard.press('Enter');
    // The question and the result name the backup chosen, as the preview did.
    await answer(`Restore ${name} to the incremental backup of ${b2.label}?`, 'Restore');
    await restoredTo(b2, `Restored ${name} to the incremental backup of ${b2.label}`);
  });

  process.stderr.write(`[ui] done; the screen at the end:\n  ${await seen(page)}\n`);
  return 0;
}

// UI test: "give me production in my dev site" (issue 12), clicked through the
// real workbench. A real S3 server (Ceph RGW, test/support/s3.ts) holds the
// generations a production site (a folder beside the workspace) pushed: a full
// backup and two incrementals, and a snapshot. The workspace is an empty dev site whose
// plone-backup.json names the database and that remote; the host's environment
// holds no AWS credentials.
//
//   1. Set Remote Credentials… from the palette: the access key, the secret
//      (a password box), no session token (a password box), no passphrase:
//      stored in VS Code's secret storage;
//   2. the Backups view: the Remote row, clicked open, groups the kinds as the
//      local view does: Backups (the three remote generations, newest first)
//      and Snapshots (the snapshot);
//   3. Restore from Remote… from the palette, the middle generation typed into
//      the list's filter, Restore in the modal dialog: Data.fs and the blob
//      files are production's at that backup;
//   4. Restore from Remote… again, Enter on the newest (the focused first item),
//      Restore: an incremental restore (said in the notification) to the newest;
//   5. Restore from Remote…, the snapshot typed into the list (under its
//      Snapshots separator), Restore: production's state at the snapshot.
//
//   npm run build && npx tsc -p tsconfig.test.json
//   node scripts/vscode/run-offline.mjs --ui test/extension/ui/remote.mjs
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { engine, md5, repo, seen, step, treeDiff, treeMd5, until, widenSidebar } from './lib/ui.mjs';

const require = createRequire(import.meta.url);
const { startS3 } = require(path.join(repo, 'out/test/support/s3.js'));

const HOUR = 3600_000;

/** The blob files of a blobstorage ({ path: md5 }, no .layout, no tmp/). */
const blobFiles = (dir) => Object.fromEntries(Object.entries(treeMd5(dir)).filter(([k]) => k.endsWith('.blob')));

/** Production: a site beside the workspace with three backups (3, 2 and 1 hours ago), pushed to `url`. */
async function production(root, url, s3) {
  const file = path.join(root, 'var/filestorage/Data.fs');
  const blobDir = path.join(root, 'var/blobstorage');
  const site = await engine.SampleSite.create({ file, blobDir });
  await site.close();
  const dep = await engine.discoverDeployment(root);
  const changes = [
    ['fullbackup', (s) => s.addDocument('Front page', undefined, '/ admin').then(() => s.uploadFile('annual-report.pdf', Buffer.alloc(40_000, 1)))],
    ['backup', (s) => s.uploadFile('team-photo.jpg', Buffer.alloc(30_000, 2), undefined, '/ editor')],
    ['backup', (s) => s.addDocument('News: opening hours', undefined, '/ editor').then(() => s.uploadFile('minutes.pdf', Buffer.alloc(9_000, 3)))],
  ];
  const points = [];
  for (const [i, [kind, change]] of changes.entries()) {
    const s = await engine.SampleSite.open({ file, blobDir });
    await change(s);
    await s.close();
    const when = new Date(Date.now() - (3 - i) * HOUR);
    const [r] = await engine.backupDeployment(dep, kind, { now: () => when });
    points.push({ stamp: r.filestorage.stamp, label: engine.localTime(r.filestorage.stamp), dataFs: md5(file), blobs: blobFiles(blobDir) });
  }
  // A snapshot half an hour ago, after one more change: its own space on the remote.
  const s = await engine.SampleSite.open({ file, blobDir });
  await s.addDocument('Press release', undefined, '/ editor');
  await s.close();
  const when = new Date(Date.now() - HOUR / 2);
  const [snap] = await engine.backupDeployment(dep, 'snapshot', { now: () => when });
  const snapshot = { stamp: snap.filestorage.stamp, label: engine.localTime(snap.filestorage.stamp), dataFs: md5(file), blobs: blobFiles(blobDir) };
  const t = await engine.openTarget(url, { endpoint: s3.env.endpoint, credentials: { accessKeyId: s3.env.accessKey, secretAccessKey: s3.env.secretKey }, create: true });
  try {
    const res = await engine.pushDeployment(dep, t);
    const pushed = res.storages.map((x) => [x.storage, x.pushed.length]);
    if (
      JSON.stringify(pushed) !==
      JSON.stringify([
        ['main', 3],
        ['main/snapshot', 1],
      ])
    )
      throw new Error(`production pushed ${JSON.stringify(pushed)}, not three generations and a snapshot`);
  } finally {
    t.close();
  }
  return { points, snapshot };
}

export default async function run(driver) {
  const { page, workspace } = driver;
  const name = path.basename(workspace);
  for (const k of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_PROFILE']) {
    if (process.env[k]) throw new Error(`${k} is set in the environment: the journey must show that the stored credentials are the ones used`);
  }
  process.stderr.write('[ui] starting the S3 server\n');
  const s3 = await startS3();
  try {
    const url = await s3.bucket('sites/prod');
    const { points, snapshot } = await production(path.join(path.dirname(workspace), 'production'), url, s3);
    const [, middle, newest] = points;
    // The dev site: nothing yet but its configuration, naming the database and the remote.
    fs.writeFileSync(
      path.join(workspace, 'plone-backup.json'),
      JSON.stringify({ storages: [{ name: 'main', file: 'var/filestorage/Data.fs', blobDir: 'var/blobstorage' }], remote: { url, endpoint: s3.env.endpoint } }, null, 2),
    );
    const file = path.join(workspace, 'var/filestorage/Data.fs');
    const blobDir = path.join(workspace, 'var/blobstorage');

    const sidebar = page.locator('.part.sidebar');
    const rows = sidebar.locator('.monaco-list-row');
    const quick = page.locator('.quick-input-widget');
    const quickInput = quick.locator('.quick-input-box input');
    const focusedRow = quick.locator('.quick-input-list .monaco-list-row.focused');
    const dialog = page.locator('.monaco-dialog-box');
    const toasts = page.locator('.notifications-toasts .notification-toast');
    const oneLine = (s) => s.replace(/\s+/g, ' ').trim();
    const message = async () => oneLine((await quick.locator('.quick-input-message').allInnerTexts()).join(' '));

    await step(page, 'the Backups view shows the empty dev site and its Remote row', async () => {
      await driver.openActivity('Plone Backup');
      await rows.filter({ hasText: 'Remote' }).first().waitFor({ timeout: 30_000 });
      await widenSidebar(page);
    });

    await step(page, 'Set Remote Credentials…: access key, secret, no session token, no passphrase', async () => {
      await driver.runCommand('Plone Backup: Set Remote Credentials…');
      await until(
        async () => (await message()).includes('Access key id'),
        async () => 'no box asks for the access key id',
        15_000,
      );
      await quickInput.fill(s3.env.accessKey);
      await page.keyboard.press('Enter');
      await until(
        async () => (await message()).includes('Secret access key'),
        async () => 'no box asks for the secret access key',
        10_000,
      );
      if ((await quickInput.getAttribute('type')) !== 'password') throw new Error('the secret is typed into a box that shows it');
      await quickInput.fill(s3.env.secretKey);
      await page.keyboard.press('Enter');
      await until(
        async () => (await message()).includes('Session token'),
        async () => 'no box asks for a session token',
        10_000,
      );
      if ((await quickInput.getAttribute('type')) !== 'password') throw new Error('the session token is typed into a box that shows it');
      await page.keyboard.press('Enter');
      await until(
        async () => (await message()).includes('Encryption passphrase'),
        async () => 'no box asks for the passphrase',
        10_000,
      );
      await page.keyboard.press('Enter');
      await toasts.filter({ hasText: "in VS Code's secret storage" }).first().waitFor({ timeout: 15_000 });
      const settings = path.join(workspace, '.vscode', 'settings.json');
      if (fs.existsSync(settings) && fs.readFileSync(settings, 'utf8').includes(s3.env.secretKey)) throw new Error('the secret went into settings.json');
    });

    await step(page, 'a click on Remote shows Backups (the three remote generations, newest first) and Snapshots (the snapshot)', async () => {
      await rows.filter({ hasText: 'Remote' }).first().click();
      const all = async () => (await driver.listRows('.part.sidebar')).map(oneLine);
      const remoteRows = async () => (await all()).filter((t) => / ago/.test(t) && /full|incremental/.test(t));
      await until(
        async () => (await remoteRows()).length === 4,
        async () => `the Remote section did not list four generations: ${(await all()).join(' | ')}`,
        60_000,
      );
      const listed = await all();
      const at = (re) => listed.findIndex((t) => re.test(t));
      const [backups, snapshots] = [at(/^Backups ?3 generations$/), at(/^Snapshots ?1 generation$/)];
      if (backups < 0 || !(backups < snapshots)) throw new Error(`no Backups and Snapshots groups, in that order: ${listed.join(' | ')}`);
      const got = await remoteRows();
      if (!/incremental/.test(got[0]) || !/full/.test(got[2]) || !/full/.test(got[3])) throw new Error(`the remote generations read, in order: ${got.join(' | ')}`);
    });

    await step(page, `Restore from Remote…, "${middle.label}" typed into the list, Restore: production's state then`, async () => {
      await driver.runCommand('Plone Backup: Restore from Remote…');
      await quick.locator('.quick-input-title', { hasText: `Restore ${name} from ${url}` }).waitFor({ timeout: 30_000 });
      await quickInput.fill(middle.label);
      await focusedRow.filter({ hasText: middle.label }).waitFor({ timeout: 10_000 });
      await page.keyboard.press('Enter');
      await dialog.first().waitFor({ timeout: 60_000 });
      const asked = oneLine(await dialog.first().innerText());
      if (!asked.includes(`Restore ${name} to the backup of ${middle.label} from ${url}?`)) throw new Error(`the dialog asks: ${asked}`);
      await dialog.getByRole('button', { name: 'Restore', exact: true }).click();
      await toasts
        .filter({ hasText: `Restored ${name} to the backup of ${middle.label} from ${url}` })
        .first()
        .waitFor({ timeout: 60_000 });
      if (md5(file) !== middle.dataFs) throw new Error(`Data.fs is not production's of ${middle.label}`);
      const diff = treeDiff(middle.blobs, blobFiles(blobDir));
      if (diff) throw new Error(`the blob files are not production's of ${middle.label}: ${diff}`);
    });

    await step(page, 'Restore from Remote… again, Enter on the newest, Restore: incremental, to the newest', async () => {
      await driver.runCommand('Plone Backup: Restore from Remote…');
      await quick.locator('.quick-input-title', { hasText: `Restore ${name} from ${url}` }).waitFor({ timeout: 30_000 });
      await focusedRow.filter({ hasText: newest.label }).waitFor({ timeout: 10_000 });
      await page.keyboard.press('Enter');
      await dialog.first().waitFor({ timeout: 60_000 });
      const asked = oneLine(await dialog.first().innerText());
      if (!/appends the 1 missing piece/.test(asked)) throw new Error(`the dialog does not announce an incremental restore: ${asked}`);
      await dialog.getByRole('button', { name: 'Restore', exact: true }).click();
      const said = toasts.filter({ hasText: `Restored ${name} to the backup of ${newest.label} from ${url} (incremental` });
      await said.first().waitFor({ timeout: 60_000 });
      if (md5(file) !== newest.dataFs) throw new Error(`Data.fs is not production's of ${newest.label}`);
      const diff = treeDiff(newest.blobs, blobFiles(blobDir));
      if (diff) throw new Error(`the blob files are not production's of ${newest.label}: ${diff}`);
    });

    await step(page, `Restore from Remote…, the snapshot "${snapshot.label}" typed into the list, Restore: production's state at the snapshot`, async () => {
      await driver.runCommand('Plone Backup: Restore from Remote…');
      await quick.locator('.quick-input-title', { hasText: `Restore ${name} from ${url}` }).waitFor({ timeout: 30_000 });
      await quick.locator('.quick-input-list', { hasText: 'Snapshots' }).waitFor({ timeout: 10_000 });
      await quickInput.fill(snapshot.label);
      await focusedRow.filter({ hasText: snapshot.label }).filter({ hasText: 'snapshot' }).waitFor({ timeout: 10_000 });
      await page.keyboard.press('Enter');
      await dialog.first().waitFor({ timeout: 60_000 });
      const asked = oneLine(await dialog.first().innerText());
      if (!asked.includes(`Restore ${name} to the snapshot of ${snapshot.label} from ${url}?`)) throw new Error(`the dialog asks: ${asked}`);
      await dialog.getByRole('button', { name: 'Restore', exact: true }).click();
      await toasts
        .filter({ hasText: `Restored ${name} to the snapshot of ${snapshot.label} from ${url}` })
        .first()
        .waitFor({ timeout: 60_000 });
      if (md5(file) !== snapshot.dataFs) throw new Error(`Data.fs is not production's at the snapshot of ${snapshot.label}`);
      const diff = treeDiff(snapshot.blobs, blobFiles(blobDir));
      if (diff) throw new Error(`the blob files are not production's at the snapshot: ${diff}`);
    });

    process.stderr.write(`[ui] done; the screen at the end:\n  ${await seen(page)}\n`);
    return 0;
  } finally {
    await s3.destroy();
  }
}

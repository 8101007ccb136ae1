/**
 * Bad input for every deployment command, through the real CLI bundle in a
 * child process (no terminal, no stdin, as under cron): no deployment found
 * and an unreadable config are one-line messages with exit 1 / 2 for every
 * command; a restore whose blob generation is missing (NOT_FOUND), a date
 * before any backup (NO_BACKUPS), a running site (SITE_RUNNING), usage
 * errors (exit 2) and a restore without --yes all fail clearly and change
 * nothing; a successful cron run prints nothing.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { md5File, snapshot, type TestHooks, tmpDir } from '../support/fs';
import { type CliRun, holdSiteLock, runCli } from '../support/processes';
import { generationBlobFiles, generationFile, makeSite, sampleSite } from '../support/site';
import { nth } from '../support/must';

const COMMANDS: string[][] = [
  ['backup'],
  ['fullbackup'],
  ['snapshot'],
  ['zipbackup'],
  ['restore', '--yes'],
  ['snapshotrestore', '--yes'],
  ['ziprestore', '--yes'],
  ['altrestore', '/nowhere', '--yes'],
  ['list'],
  ['verify'],
  ['check'],
  ['drill'],
];

/** A failure as cron sees it: the exit status and one line on stderr naming the command, nothing on stdout. */
function oneLine(r: CliRun, status: number, cmd: string, re: RegExp): void {
  assert.equal(r.status, status, `${cmd}: exit ${r.status}, stderr ${r.stderr}`);
  assert.equal(r.stdout, '', `${cmd}: stdout`);
  const lines = r.stderr.split('\n').filter(Boolean);
  assert.equal(lines.length, 1, `${cmd}: one line, got ${r.stderr}`);
  assert.ok(nth(lines, 0).startsWith(`plone-backup ${cmd}: `), lines[0]);
  assert.match(nth(lines, 0), re, cmd);
}

/** A site with two backups, closed (not running). */
async function siteWithBackups(t: TestHooks, root: string) {
  const s = await makeSite(t, root, { files: 2 });
  await s.site.close();
  let r = runCli(['backup', '--dir', root]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout + r.stderr, '', 'a successful run under cron prints nothing');
  // Reopen it to write more, then back up again (stamps differ by at least a second).
  const again = await sampleSite(t, { open: true, file: s.file, blobDir: s.blobDir });
  await again.addDocument('more');
  await again.close();
  r = runCli(['backup', '--dir', root, '--json']);
  assert.equal(r.status, 0, r.stderr);
  const res = JSON.parse(r.stdout);
  assert.equal(res[0].filestorage.action, 'incremental');
  return { ...s, stamp: res[0].filestorage.stamp as string };
}

describe('the CLI with bad input', () => {
  it('no deployment found: every command exits 1 with one line', (t) => {
    const empty = tmpDir(t);
    for (const args of COMMANDS) {
      const r = runCli([...args, '--dir', empty]);
      oneLine(r, 1, nth(args, 0), /No Plone deployment found in .*--dir/);
    }
    assert.deepEqual(fs.readdirSync(empty), [], 'nothing was created');
    // Run from inside a folder without a site, without --dir.
    oneLine(runCli(['backup'], { cwd: empty }), 1, 'backup', /No Plone deployment found/);
  });

  it('an unreadable or invalid plone-backup.json: every command fails with one line, nothing changes', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root);
    await s.site.close();
    const before = snapshot(root);
    const cfg = path.join(root, 'plone-backup.json');
    fs.mkdirSync(cfg); // unreadable as a file (root reads any file, so a folder stands in for permissions)
    for (const args of COMMANDS) {
      oneLine(runCli([...args, '--dir', root]), 2, nth(args, 0), /plone-backup\.json cannot be used: it cannot be read/);
    }
    fs.rmdirSync(cfg);
    fs.writeFileSync(cfg, '{"keep": "two"}');
    for (const args of COMMANDS) {
      oneLine(runCli([...args, '--dir', root]), 2, nth(args, 0), /"keep" must be a whole number/);
    }
    fs.rmSync(cfg);
    assert.deepEqual(snapshot(root), before);
  });

  it('usage errors exit 2', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root);
    await s.site.close();
    const before = snapshot(root);
    const cases: [string[], RegExp][] = [
      [['backup', 'extra'], /takes no arguments/],
      [['backup', '--bogus'], /unknown option --bogus/],
      [['list', '-x'], /unknown option -x/],
      [['check', '--dir'], /--dir needs a value/],
      [['backup', '--keep', '-1'], /--keep takes a whole number/],
      [['backup', '--lock-wait', 'soon'], /--lock-wait takes a number/],
      [['restore', 'a', 'b'], /at most one DATE/],
      [['restore', '2026-13-45', '--yes'], /not a valid date/],
      [['restore', 'yesterday', '--yes'], /not a date repozo understands/],
      [['ziprestore', '2026-01-01'], /takes no arguments/],
      [['altrestore', '--yes'], /altrestore needs a SOURCE folder, or alternative_restore_source/],
      [['backup', '--part', 'backup'], /--part backup: there is no buildout.cfg/],
      [['list', '--json=yes'], /--json takes no value/],
    ];
    for (const [args, re] of cases) oneLine(runCli(args.includes('--dir') ? args : [...args, '--dir', root]), 2, nth(args, 0), re);
    const unknown = runCli(['frobnicate']);
    assert.equal(unknown.status, 2);
    assert.match(unknown.stderr, /unknown command "frobnicate"/);
    assert.deepEqual(snapshot(root), before);
  });

  it('restore: no --yes without a terminal, missing generation, date before any backup, running site', async (t) => {
    const root = tmpDir(t);
    const s = await siteWithBackups(t, root);
    const before = snapshot(s.varDir);
    const liveMd5 = md5File(s.file);

    // No --yes and nobody to ask: refused.
    for (const cmd of ['restore', 'snapshotrestore', 'ziprestore']) {
      const r = runCli([cmd, '--dir', root]);
      if (cmd === 'restore') oneLine(r, 2, cmd, /needs a "yes".*--yes/);
      else assert.notEqual(r.status, 0);
    }
    assert.deepEqual(snapshot(s.varDir), before);

    // A date before any backup.
    oneLine(runCli(['restore', '2020-01-01', '--yes', '--dir', root]), 1, 'restore', /no backup of main .* from before 2020-01-01/);
    // Nothing was ever snapshotted or zipped.
    oneLine(
      runCli(['snapshotrestore', '--yes', '--dir', root]),
      1,
      'snapshotrestore',
      /There is no snapshot of main: .*snapshotbackups does not exist\. Make one first with `plone-backup snapshot`/,
    );
    oneLine(runCli(['ziprestore', '--yes', '--dir', root]), 1, 'ziprestore', /There is no zip backup of main: .*zipbackups does not exist/);
    assert.deepEqual(snapshot(s.varDir), before);

    // The site is running (its lock is held): refused; --force goes ahead.
    await holdSiteLock(t, s.file);
    const withLock = snapshot(s.varDir);
    oneLine(runCli(['restore', '--yes', '--dir', root]), 1, 'restore', /The site is running: .*Data\.fs\.lock is held.*nothing was restored/);
    assert.deepEqual(snapshot(s.varDir), withLock);
    const forced = runCli(['restore', '--yes', '--force', '--dir', root, '--json']);
    assert.equal(forced.status, 0, forced.stderr);
    assert.equal(JSON.parse(forced.stdout)[0].mode, 'unchanged');

    // The newest generation is missing, and so are the older ones: NOT_FOUND, nothing changes.
    fs.rmSync(path.join(s.varDir, 'blobstoragebackups'), { recursive: true });
    const noGen = snapshot(s.varDir);
    oneLine(runCli(['restore', '--yes', '--force', '--dir', root]), 1, 'restore', /There is no blob backup for main at .* in .*blobstoragebackups/);
    assert.deepEqual(snapshot(s.varDir), noGen);
    assert.equal(md5File(s.file), liveMd5);
  });

  it('a restore from a generation that lacks a file fails before changing anything', async (t) => {
    const root = tmpDir(t);
    const s = await siteWithBackups(t, root);
    const gen = path.join(s.varDir, 'blobstoragebackups', `blobstorage.${s.stamp}.json`);
    const victim = (await generationBlobFiles(gen))[0]!;
    fs.rmSync(generationFile(gen, victim));
    const before = snapshot(s.varDir);
    oneLine(runCli(['restore', '--yes', '--full-restore', '--dir', root]), 1, 'restore', /lacks .*\.blob.*nothing was restored/);
    assert.deepEqual(snapshot(s.varDir), before);
    // check tells which generation is incomplete.
    const c = runCli(['check', '--dir', root, '--json']);
    assert.equal(c.status, 1);
    assert.ok(JSON.parse(c.stdout).findings.some((f: { code: string }) => f.code === 'GENERATION_INCOMPLETE'));
  });

  it('help and the successful paths print what they did when asked', async (t) => {
    const root = tmpDir(t);
    const s = await siteWithBackups(t, root);
    const h = runCli(['backup', '--help']);
    assert.equal(h.status, 0);
    assert.match(h.stdout, /altrestore \[SOURCE\] \[DATE\]/);
    const v = runCli(['backup', '--dir', root, '--verbose']);
    assert.equal(v.status, 0, v.stderr);
    assert.match(v.stdout, /main: no new transactions/);
    const r = runCli(['restore', '--yes', '--dir', root, '--verbose', '--full-restore']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`main: full restore to ${s.stamp}`));
    assert.match(r.stdout, /the previous state is kept at .*before-restore/);
  });
});

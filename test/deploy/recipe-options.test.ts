/**
 * collective.recipe.backup's options and scripts, as an administrator who
 * switches uses them: the folders are checked before anything is written (a
 * snapshot folder equal to the backup folder was once deleting backups),
 * keep = 0 keeps everything, a flag beats plone-backup.json, pre_command and
 * post_command run around backups and restores (a failing pre_command stops
 * the run), enable_snapshotrestore / enable_zipbackup are honoured, and the
 * recipe's script names and flags (snapshotbackup, -q, -n, DATE anywhere)
 * work from the command line as in a crontab.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { backupDeployment, discoverDeployment, restoreDeployment, listRepository } from '../../src/engine/internal';
import { rejectsWith } from '../support/assert';
import { fakeClock } from '../support/fixtures';
import { blobContents, content, md5File, snapshot, tmpDir } from '../support/fs';
import { runCli } from '../support/processes';
import { makeSite } from '../support/site';

const writeJson = (root: string, cfg: unknown) => fs.writeFileSync(path.join(root, 'plone-backup.json'), JSON.stringify(cfg));

describe('recipe options', () => {
  it('a snapshot folder equal to the backup folder is refused before anything is written or deleted', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root);
    await s.site.close();
    const dep = await discoverDeployment(root);
    const clock = fakeClock();
    for (let i = 0; i < 3; i++) await backupDeployment(dep, 'fullbackup', { now: clock.now });
    writeJson(root, { keep: 1, storages: [{ name: 'main', snapshots: 'var/backups' }] });
    const before = snapshot(root);
    const e = await rejectsWith(discoverDeployment(root), 'CONFIG_BAD');
    assert.match(e.message, /snapshotlocation \(snapshots\) and location \(backups\)|location \(backups\) and snapshotlocation \(snapshots\)/);
    assert.match(e.message, /same folder/);
    const r = runCli(['snapshotbackup', '--dir', root]);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /^plone-backup snapshotbackup: .*same folder/);
    assert.deepEqual(snapshot(root), before, 'nothing was written or deleted');
  });

  it('a backup folder inside another, or inside the live blobstorage, is refused', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root);
    await s.site.close();
    writeJson(root, { storages: [{ name: 'main', blobBackups: 'var/backups/blobs' }] });
    let e = await rejectsWith(discoverDeployment(root), 'CONFIG_BAD');
    assert.match(e.message, /blobbackuplocation \(blobBackups\) .*var\/backups\/blobs is inside location \(backups\)/);
    writeJson(root, { storages: [{ name: 'main', snapshots: 'var/blobstorage/snap' }] });
    e = await rejectsWith(discoverDeployment(root), 'CONFIG_BAD');
    assert.match(e.message, /inside the live blobstorage/);
    writeJson(root, { storages: [{ name: 'main', zips: 'var' }] });
    e = await rejectsWith(discoverDeployment(root), 'CONFIG_BAD');
    assert.match(e.message, /holds the live blobstorage|is inside/);
  });

  it('keep = 0 keeps every backup', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root);
    await s.site.close();
    writeJson(root, { keep: 0 });
    const dep = await discoverDeployment(root);
    assert.equal(dep.settings.keep, 0);
    const clock = fakeClock();
    for (let i = 0; i < 4; i++) await backupDeployment(dep, 'fullbackup', { now: clock.now });
    const { files } = await listRepository(path.join(root, 'var', 'backups'));
    assert.equal(files.filter((f) => f.full).length, 4);
    assert.equal(fs.readdirSync(path.join(root, 'var', 'blobstoragebackups')).filter((n) => n.startsWith('blobstorage.2')).length, 4);
  });

  it('precedence: a flag beats plone-backup.json, which beats what it does not say', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root);
    await s.site.close();
    writeJson(root, { keep: 4, gzip: false, keeep: 1 });
    const dep = await discoverDeployment(root, { backupRoot: 'elsewhere', keep: 7 });
    assert.equal(dep.settings.keep, 7, '--keep beats the file');
    assert.equal(dep.settings.gzip, false, 'the file beats the default');
    assert.equal(dep.storages[0]!.dirs.backups, path.join(root, 'elsewhere', 'backups'), '--backup-dir counts with a plone-backup.json too');
    assert.equal(dep.storages[0]!.file, s.file, 'the storages come from the var folder when the file names none');
    assert.equal(dep.warnings.length, 1);
    assert.match(dep.warnings[0]!, /unknown key "keeep" is ignored; did you mean "keep"\?/);
    // The CLI says so on stderr, also under cron (where a misconfiguration must reach the mail).
    const r = runCli(['list', '--dir', root]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /^warning: .*unknown key "keeep" is ignored; did you mean "keep"\?$/m);
  });

  it('the recipe option names in plone-backup.json: archive_blob + compress_blob write .tar.gz generations that restore', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root, { files: 3 });
    await s.site.close();
    writeJson(root, { archive_blob: true, compress_blob: true, full: true });
    const dep = await discoverDeployment(root);
    assert.equal(dep.settings.blobFormat, 'tar.gz');
    const clock = fakeClock();
    const [r] = await backupDeployment(dep, 'backup', { now: clock.now });
    assert.equal(r!.filestorage.action, 'full');
    assert.match(r!.blobGeneration!, /blobstorage\.\d{4}(-\d\d){5}\.tar\.gz$/);
    const [r2] = await backupDeployment(dep, 'backup', { now: clock.now });
    assert.equal(r2!.filestorage.action, 'full', 'full = true makes every backup full');
    const want = { fs: md5File(s.file), blobs: snapshot(s.blobDir) };
    fs.rmSync(s.blobDir, { recursive: true });
    fs.writeFileSync(s.file, fs.readFileSync(s.file).subarray(0, 4));
    await restoreDeployment(dep, { keepOld: false });
    assert.equal(md5File(s.file), want.fs);
    const got = snapshot(s.blobDir);
    for (const [k, v] of Object.entries(want.blobs)) if (k.endsWith('.blob')) assert.equal(got[k], v, k);
  });

  it('pre_command and post_command run around a backup and a restore, with the stamp and folders in the environment', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root);
    await s.site.close();
    const log = path.join(root, 'hooks.log');
    const hook = (phase: string) => `echo "${phase} $PLONE_BACKUP_COMMAND $PLONE_BACKUP_PHASE \${PLONE_BACKUP_STAMP:-none} $PLONE_BACKUP_LOCATION" >> ${log}`;
    writeJson(root, { pre_command: hook('pre'), post_command: hook('post') });
    const dep = await discoverDeployment(root);
    const [r] = await backupDeployment(dep, 'backup', { now: fakeClock().now });
    await restoreDeployment(dep, { keepOld: false });
    const backups = path.join(root, 'var', 'backups');
    assert.deepEqual(fs.readFileSync(log, 'utf8').trim().split('\n'), [
      `pre backup pre none ${backups}`,
      `post backup post ${r!.filestorage.stamp} ${backups}`,
      `pre restore pre none ${backups}`,
      `post restore post ${r!.filestorage.stamp} ${backups}`,
    ]);
  });

  it('a failing pre_command stops the backup before anything is written, exit 1 with what it said', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root);
    await s.site.close();
    writeJson(root, { pre_command: 'echo disk not mounted >&2; exit 3', post_command: 'touch post-ran' });
    const before = snapshot(root);
    const r = runCli(['backup', '--dir', root]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^plone-backup backup: The pre_command .* failed \(exit 3\); the backup was not run\. It said: disk not mounted/);
    assert.deepEqual(snapshot(root), before);
  });

  it('enable_snapshotrestore = false refuses snapshotrestore; enable_zipbackup = false refuses zipbackup', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root);
    await s.site.close();
    writeJson(root, { enable_snapshotrestore: false, enable_zipbackup: false });
    const dep = await discoverDeployment(root);
    await backupDeployment(dep, 'snapshot', { now: fakeClock().now });
    const before = md5File(s.file);
    let e = await rejectsWith(restoreDeployment(dep, { kind: 'snapshot' }), 'CONFIG_BAD');
    assert.match(e.message, /snapshots is disabled/);
    e = await rejectsWith(backupDeployment(dep, 'zipbackup'), 'CONFIG_BAD');
    assert.match(e.message, /Zip backups are not enabled/);
    assert.equal(md5File(s.file), before);
    assert.ok(!fs.existsSync(path.join(root, 'var', 'zipbackups')));
  });

  it("the recipe's scripts' names and flags: snapshotbackup, -q, restore -n with the DATE anywhere", async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root);
    await s.site.close();
    let r = runCli(['backup', '-q', '--dir', root]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout + r.stderr, '');
    r = runCli(['snapshotbackup', '-q', '--dir', root, '--json']);
    assert.equal(r.status, 0, r.stderr);
    const stamp = (JSON.parse(r.stdout) as { filestorage: { stamp: string } }[])[0]!.filestorage.stamp;
    assert.ok(fs.existsSync(path.join(root, 'var', 'snapshotbackups')));
    const want = md5File(s.file);
    fs.writeFileSync(s.file, fs.readFileSync(s.file).subarray(0, 4));
    r = runCli(['snapshotrestore', '-n', stamp, '--dir', root, '--discard-old']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(md5File(s.file), want);
    r = runCli(['restore', '--dir', root]);
    assert.equal(r.status, 2, 'without -n and without a terminal a restore is refused');
    r = runCli(['restore', '--no-prompt', '-q', '--dir', root, '--discard-old']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, '');
  });

  it("plone-backup scripts writes bin/backup, bin/restore, ... that a crontab runs unchanged; the recipe's own are replaced only with --force", async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root);
    await s.site.close();
    const bin = path.join(root, 'bin');
    fs.mkdirSync(bin);
    fs.writeFileSync(path.join(bin, 'backup'), "#!/usr/bin/python3\n# the recipe's\n", { mode: 0o755 });
    let r = runCli(['scripts', '--dir', root]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /bin\/backup exists and was not written by plone-backup; nothing was written/);
    assert.deepEqual(fs.readdirSync(bin), ['backup']);
    r = runCli(['scripts', '--dir', root, '--force']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(fs.readFileSync(path.join(bin, 'backup.before-plone-backup'), 'utf8'), "#!/usr/bin/python3\n# the recipe's\n");
    assert.deepEqual(fs.readdirSync(bin).sort(), ['backup', 'backup.before-plone-backup', 'restore', 'snapshotbackup', 'snapshotrestore', 'ziprestore', 'zipbackup'].sort());
    assert.equal(fs.statSync(path.join(bin, 'backup')).mode & 0o111, 0o111);
    // The crontab line, as it was: bin/backup -q, from another folder.
    const sh = (args: string[]) => execFileSync('/bin/sh', ['-c', args.join(' ')], { cwd: '/', encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    assert.equal(sh([path.join(bin, 'backup'), '-q']), '');
    assert.ok(fs.readdirSync(path.join(root, 'var', 'backups')).some((n) => n.endsWith('.fsz')));
    const want = md5File(s.file);
    fs.writeFileSync(s.file, fs.readFileSync(s.file).subarray(0, 4));
    sh([path.join(bin, 'restore'), '-n', '--discard-old']);
    assert.equal(md5File(s.file), want);
    // A second run replaces its own scripts without --force.
    r = runCli(['scripts', '--dir', root]);
    assert.equal(r.status, 0, r.stderr);
  });

  for (const compress of [false, true]) {
    it(`incremental_blobs${compress ? ' + compress_blob' : ''}: a full archive with its .snar, then deltas; every stamp restores, by us and by GNU tar as the recipe extracts`, async (t) => {
      const root = tmpDir(t);
      const s = await makeSite(t, root, { files: 2 });
      fs.writeFileSync(
        path.join(root, 'buildout.cfg'),
        `[buildout]\nparts = instance backup\n\n[instance]\nrecipe = plone.recipe.zope2instance\n\n[backup]\nrecipe = collective.recipe.backup\narchive_blob = true\nincremental_blobs = true\ncompress_blob = ${compress}\nkeep = 2\n`,
      );
      const dep = await discoverDeployment(root);
      assert.equal(dep.source, 'recipe');
      assert.equal(dep.settings.blobFormat, compress ? 'incremental.gz' : 'incremental');
      const clock = fakeClock();
      const states: { stamp: string; fs: string; blobs: Record<string, string> }[] = [];
      const step = async (expect: string) => {
        const [r] = await backupDeployment(dep, 'backup', { now: clock.now });
        assert.equal(r!.filestorage.action, expect);
        states.push({ stamp: r!.filestorage.stamp!, fs: md5File(s.file), blobs: blobContents(s.blobDir) });
        return r!;
      };
      await step('full');
      const oid = await s.site.uploadFile('third.pdf', content('third'));
      await s.site.uploadFile('third.pdf', content('third, replaced'), oid);
      const r2 = await step('incremental');
      await s.site.uploadFile('fourth.pdf', content('fourth'));
      await step('incremental');
      const ext = compress ? '.tar.gz' : '.tar';
      const names = fs.readdirSync(path.join(root, 'var', 'blobstoragebackups')).sort();
      assert.deepEqual(
        names,
        [
          `blobstorage.${states[0]!.stamp}${ext}`,
          `blobstorage.${states[0]!.stamp}.snar`,
          `blobstorage.${states[1]!.stamp}.delta${ext}`,
          `blobstorage.${states[2]!.stamp}.delta${ext}`,
        ].sort(),
      );
      assert.equal(r2.blobGeneration, path.join(root, 'var', 'blobstoragebackups', `blobstorage.${states[1]!.stamp}.delta${ext}`));
      // A pack makes the next backup full: a new chain with its own .snar.
      await s.site.writer.pack();
      await step('full');
      await s.site.close();
      for (const st of states) {
        // GNU tar, as the recipe's restore: the chain's full archive, then each delta up to the stamp, --incremental.
        const out = path.join(tmpDir(t), 'blobstorage');
        fs.mkdirSync(out);
        const chain = fs
          .readdirSync(path.join(root, 'var', 'blobstoragebackups'))
          .filter((n) => /\.tar(\.gz)?$/.test(n))
          .sort();
        const fullIdx = chain
          .map((n, i) => [n, i] as const)
          .filter(([n]) => !n.includes('.delta.') && n.slice(12, 31) <= st.stamp)
          .at(-1)![1];
        for (const n of chain.slice(fullIdx).filter((n) => n.slice(12, 31) <= st.stamp)) {
          execFileSync('tar', [compress ? 'xzf' : 'xf', path.join(root, 'var', 'blobstoragebackups', n), '--incremental', '-C', out]);
        }
        assert.deepEqual(blobContents(out), st.blobs, `GNU tar's restore of ${st.stamp}`);
        await restoreDeployment(dep, { date: st.stamp, keepOld: false });
        assert.equal(md5File(s.file), st.fs, `Data.fs of ${st.stamp}`);
        assert.deepEqual(blobContents(s.blobDir), st.blobs, `our restore of ${st.stamp}`);
      }
    });
  }

  const buildout = (root: string, opts: string) =>
    fs.writeFileSync(
      path.join(root, 'buildout.cfg'),
      `[buildout]\nparts = instance backup\n\n[instance]\nrecipe = plone.recipe.zope2instance\n\n[backup]\nrecipe = collective.recipe.backup\n${opts}\n`,
    );

  for (const format of ['', 'archive_blob = true', 'archive_blob = true\nincremental_blobs = true']) {
    it(`only_blobs${format ? ` (${format.replace('\n', ', ')})` : ''}: blob backups stamped with their time, no filestorage piece; a restore replaces only the blobstorage`, async (t) => {
      const root = tmpDir(t);
      const s = await makeSite(t, root, { files: 2 });
      buildout(root, `only_blobs = true\nkeep = 2\n${format}`);
      const dep = await discoverDeployment(root);
      assert.equal(dep.settings.onlyBlobs, true);
      const clock = fakeClock();
      const [r1] = await backupDeployment(dep, 'backup', { now: clock.now });
      const first = { stamp: r1!.filestorage.stamp!, blobs: blobContents(s.blobDir) };
      await s.site.uploadFile('second.pdf', content('second'));
      const [r2] = await backupDeployment(dep, 'backup', { now: clock.now });
      assert.ok(!fs.existsSync(path.join(root, 'var', 'backups')) || fs.readdirSync(path.join(root, 'var', 'backups')).length === 0, 'no filestorage piece');
      assert.ok(r2!.blobGeneration && fs.existsSync(r2!.blobGeneration));
      if (format.includes('incremental')) assert.match(r2!.blobGeneration!, /\.delta\.tar$/);
      await s.site.uploadFile('third.pdf', content('third'));
      await backupDeployment(dep, 'backup', { now: clock.now });
      await s.site.close();
      const fsBefore = md5File(s.file);
      await restoreDeployment(dep, { date: first.stamp, keepOld: false });
      assert.deepEqual(blobContents(s.blobDir), first.blobs, 'the blobstorage of the first backup');
      assert.equal(md5File(s.file), fsBefore, 'Data.fs left as it is');
      // keep = 2 with keep_blob_days = 14 (the default): nothing is old enough to go.
      const left = fs.readdirSync(path.join(root, 'var', 'blobstoragebackups')).filter((n) => n.startsWith('blobstorage.2'));
      assert.ok(left.length >= 3, left.join(' '));
    });
  }

  it('backup_blobs = false: the filestorage alone is backed up and restored; the blobstorage is not touched', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root, { files: 2 });
    await s.site.close();
    buildout(root, 'backup_blobs = false');
    const dep = await discoverDeployment(root);
    assert.equal(dep.storages[0]!.blobDir, undefined);
    const [r] = await backupDeployment(dep, 'backup', { now: fakeClock().now });
    assert.equal(r!.blobGeneration, undefined);
    assert.ok(!fs.existsSync(path.join(root, 'var', 'blobstoragebackups')));
    const blobs = blobContents(s.blobDir);
    const want = md5File(s.file);
    fs.writeFileSync(s.file, fs.readFileSync(s.file).subarray(0, 4));
    await restoreDeployment(dep, { keepOld: false });
    assert.equal(md5File(s.file), want);
    assert.deepEqual(blobContents(s.blobDir), blobs);
  });

  it('only_blobs retention: keep counts backups; keep_blob_days keeps those younger than that many days (and the newest)', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root, { files: 1 });
    await s.site.close();
    const gens = () =>
      fs
        .readdirSync(path.join(root, 'var', 'blobstoragebackups'))
        .filter((n) => n.startsWith('blobstorage.2'))
        .sort();
    buildout(root, 'only_blobs = true\nkeep = 2\nkeep_blob_days = 0');
    const clock = fakeClock('2026-03-01-10-00-00', 3600);
    for (let i = 0; i < 4; i++) await backupDeployment(await discoverDeployment(root), 'backup', { now: clock.now });
    assert.deepEqual(gens(), ['blobstorage.2026-03-01-12-00-00', 'blobstorage.2026-03-01-13-00-00']);
    buildout(root, 'only_blobs = true\nkeep = 2\nkeep_blob_days = 1');
    const late = fakeClock('2026-03-02-12-30-00', 3600);
    await backupDeployment(await discoverDeployment(root), 'backup', { now: late.now });
    // 12:00 and 13:00 of the day before: 12:00 is more than a day older than 12:30, 13:00 is not.
    assert.deepEqual(gens(), ['blobstorage.2026-03-01-13-00-00', 'blobstorage.2026-03-02-12-30-00']);
  });

  it('rsync_hard_links_on_first_copy: the first blob generation hard-links the live blob files; later ones link to the previous generation', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root, { files: 2 });
    buildout(root, 'rsync_hard_links_on_first_copy = true');
    const dep = await discoverDeployment(root);
    assert.equal(dep.settings.hardLinkFirstCopy, true);
    const clock = fakeClock();
    const [r1] = await backupDeployment(dep, 'backup', { now: clock.now });
    assert.equal(r1!.copied, 0);
    assert.equal(r1!.linked, 2);
    const live = Object.keys(blobContents(s.blobDir));
    for (const rel of live) assert.equal(fs.statSync(path.join(r1!.blobGeneration!, 'blobstorage', rel)).ino, fs.statSync(path.join(s.blobDir, rel)).ino, rel);
    await s.site.uploadFile('new.pdf', content('new'));
    const [r2] = await backupDeployment(dep, 'backup', { now: clock.now });
    assert.equal(r2!.linked, 2);
    assert.equal(r2!.copied, 1, 'a new file is copied, as rsync --link-dest copies it');
    // Without the option the first generation copies.
    const other = tmpDir(t);
    const o = await makeSite(t, other, { files: 2 });
    await o.site.close();
    const [c] = await backupDeployment(await discoverDeployment(other), 'backup', { now: fakeClock().now });
    assert.equal(c!.copied, 2);
  });

  it('precedence with buildout.cfg: plone-backup.json beats the part, a flag beats both; debug = true is --verbose', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root);
    await s.site.close();
    buildout(root, 'keep = 5\nfull = true\ndebug = true\nuse_rsync = false');
    let dep = await discoverDeployment(root);
    assert.equal(dep.source, 'recipe');
    assert.equal(dep.settings.keep, 5);
    writeJson(root, { keep: 3 });
    dep = await discoverDeployment(root);
    assert.equal(dep.settings.keep, 3, 'plone-backup.json beats buildout.cfg');
    assert.equal(dep.settings.full, true, 'what plone-backup.json does not say comes from buildout.cfg');
    assert.equal(dep.part?.name, 'backup');
    dep = await discoverDeployment(root, { keep: 9 });
    assert.equal(dep.settings.keep, 9, 'a flag beats both');
    const r = runCli(['backup', '--dir', root]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /use_rsync = false: plone-backup copies blob files itself/, 'debug = true says what --verbose says');
  });
});

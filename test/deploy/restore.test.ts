/**
 * Restoring a deployment proves: a date picks the chain and the blob
 * generation of its last piece; Data.fs, its index and the blobstorage are
 * built beside the live ones (the live files are intact while the restore
 * works) and swapped in; the previous state is kept as *.before-restore-*
 * or dropped with keepOld:false; a running site (a real lock held on
 * Data.fs.lock) is refused with SITE_RUNNING and nothing changes, unless
 * forced; an incremental restore appends only the missing bytes and adds
 * only the missing blobs, and ends byte for byte where a full restore does;
 * with no date the newest backup is restored even when its stamp is ahead
 * of the clock; every storage is planned before any is touched.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { backupDeployment, checkDeployment, type Deployment, discoverDeployment, openRestore, recover, restoreDeployment, siteRunning } from '../../src/engine/internal';
import { assertConsistent, referencedBlobs, rejectsWith } from '../support/assert';
import { at, fakeClock } from '../support/fixtures';
import { blobContents, blobFiles, content, md5File, snapshot, tempLeftovers, type TestHooks, tmpDir } from '../support/fs';
import { CLI } from '../support/paths';
import { holdSiteLock } from '../support/processes';
import { makeSite, planOf, type Site } from '../support/site';
import { nth, xorByte } from '../support/must';

interface Point {
  stamp: string;
  full: boolean;
  md5: string;
  size: number;
  blobs: Record<string, string>;
  pieceBytes: number;
}

/**
 * A site with backups at six points: full, incremental, full, incremental x3
 * (one hour apart), each after some documents and file uploads/replacements.
 */
async function history(t: TestHooks, root: string): Promise<{ s: Site; dep: Deployment; points: Point[] }> {
  const s = await makeSite(t, root, { docs: 2, files: 2 });
  const dep = await discoverDeployment(root);
  const clock = fakeClock('2026-06-01-10-00-00', 3600);
  const points: Point[] = [];
  let fileOid: Buffer | undefined;
  const kinds = ['backup', 'backup', 'fullbackup', 'backup', 'backup', 'backup'] as const;
  for (const [i, kind] of kinds.entries()) {
    await s.site.addDocument(`doc at ${i}`);
    fileOid = await s.site.uploadFile(`file-${i}.pdf`, content(`point ${i}`, 4000 + i), i % 2 ? fileOid : undefined);
    const r = nth(await backupDeployment(dep, kind, { now: clock.now }), 0);
    const refs = await referencedBlobs(s.file);
    const blobs: Record<string, string> = {};
    for (const rel of refs) blobs[rel] = md5File(path.join(s.blobDir, rel));
    points.push({
      stamp: r.filestorage.stamp!,
      full: r.filestorage.action === 'full',
      md5: md5File(s.file),
      size: fs.statSync(s.file).size,
      blobs,
      pieceBytes: r.filestorage.end - r.filestorage.start,
    });
  }
  assert.deepEqual(
    points.map((p) => p.full),
    [true, false, true, false, false, false],
  );
  await s.site.close();
  return { s, dep, points };
}

describe('restore to a point in time', () => {
  it('picks the chain and generation by date, builds beside, swaps, keeps or drops the old state', async (t) => {
    const root = tmpDir(t);
    const { s, dep, points } = await history(t, root);
    const liveMd5 = md5File(s.file);
    const liveBlobs = blobContents(s.blobDir);

    // A date between point 1 and point 2 (repozo compares strings: 30 minutes after point 1).
    const date = nth(points, 1).stamp.slice(0, 14) + '30';
    const plans = await planOf(dep, { date });
    assert.equal(plans.length, 1);
    assert.equal(nth(plans, 0).stamp, nth(points, 1).stamp);
    assert.deepEqual(
      nth(plans, 0).chain.map((f) => f.stamp),
      [nth(points, 0).stamp, nth(points, 1).stamp],
    );
    assert.equal(nth(plans, 0).generation?.name, `blobstorage.${nth(points, 1).stamp}.json`);
    assert.equal(nth(plans, 0).mode, 'full');
    assert.equal(nth(plans, 0).mismatch, undefined);

    // While the restore works, the live Data.fs and blobstorage are untouched.
    let checkedDuring = 0;
    const onProgress = () => {
      if (checkedDuring++ === 0) {
        assert.equal(md5File(s.file), liveMd5);
        assert.deepEqual(blobContents(s.blobDir), liveBlobs);
      }
    };
    const stampNow = '2026-07-01-00-00-00';
    const r = nth(await restoreDeployment(dep, { date, now: at(stampNow), onProgress }), 0);
    assert.ok(checkedDuring > 0);
    assert.equal(r.mode, 'full');
    assert.equal(r.stamp, nth(points, 1).stamp);
    assert.equal(r.generation, path.join(s.varDir, 'blobstoragebackups', `blobstorage.${nth(points, 1).stamp}.json`));
    assert.equal(md5File(s.file), nth(points, 1).md5);
    assert.equal(r.bytesWritten, nth(points, 1).size);
    assert.deepEqual(blobContents(s.blobDir), nth(points, 1).blobs);
    assert.equal(r.blobFilesAdded, Object.keys(nth(points, 1).blobs).length);
    assert.ok(fs.existsSync(`${s.file}.index`), 'the index is restored with it');
    await assertConsistent(s.file, s.blobDir);
    assert.deepEqual(r.keptOld.sort(), [`${s.blobDir}.before-restore-${stampNow}`, `${s.file}.before-restore-${stampNow}`].sort());
    assert.equal(md5File(`${s.file}.before-restore-${stampNow}`), liveMd5);
    assert.deepEqual(blobContents(`${s.blobDir}.before-restore-${stampNow}`), liveBlobs);
    assert.deepEqual(tempLeftovers(s.varDir), []);

    // The full backup of point 2 exactly, dropping the old state this time.
    const r2 = nth(await restoreDeployment(dep, { date: nth(points, 2).stamp, keepOld: false, now: at('2026-07-01-00-00-01') }), 0);
    assert.equal(r2.stamp, nth(points, 2).stamp);
    assert.deepEqual(r2.keptOld, []);
    assert.equal(md5File(s.file), nth(points, 2).md5);
    assert.deepEqual(blobContents(s.blobDir), nth(points, 2).blobs);
    const left = fs.readdirSync(path.dirname(s.file)).concat(fs.readdirSync(s.varDir));
    assert.deepEqual(
      left.filter((n) => n.includes('before-restore-2026-07-01-00-00-01')),
      [],
    );
    // The first restore's kept state is still there (a second restore does not eat it).
    assert.ok(fs.existsSync(`${s.file}.before-restore-${stampNow}`));

    // Restoring the same second twice does not overwrite what was kept.
    await restoreDeployment(dep, { date: nth(points, 0).stamp, now: at(stampNow), incremental: false });
    assert.ok(fs.existsSync(`${s.file}.before-restore-${stampNow}-1`));
    assert.equal(md5File(s.file), nth(points, 0).md5);
    await assertConsistent(s.file, s.blobDir);
  });

  it('refuses while the site holds its lock, changes nothing; force overrides', async (t) => {
    const root = tmpDir(t);
    const { s, dep, points } = await history(t, root);
    await holdSiteLock(t, s.file);
    const before = snapshot(s.varDir);
    const e = await rejectsWith(restoreDeployment(dep, { date: nth(points, 1).stamp }), 'SITE_RUNNING');
    assert.match(e.message, /running/);
    assert.match(e.message, /nothing was restored/);
    assert.equal(e.path, `${s.file}.lock`);
    assert.deepEqual(snapshot(s.varDir), before, 'nothing changed');
    const r = nth(await restoreDeployment(dep, { date: nth(points, 1).stamp, force: true }), 0);
    assert.equal(r.stamp, nth(points, 1).stamp);
    assert.equal(md5File(s.file), nth(points, 1).md5);
  });

  it('a stale lock file (no process holds it) does not block a restore', async (t) => {
    const root = tmpDir(t);
    const { s, dep, points } = await history(t, root);
    fs.writeFileSync(`${s.file}.lock`, ' 999999\n');
    const r = nth(await restoreDeployment(dep, { date: nth(points, 3).stamp }), 0);
    assert.equal(r.stamp, nth(points, 3).stamp);
  });

  it('incremental restore: only the missing bytes and blobs, equal to a full restore', async (t) => {
    const root = tmpDir(t);
    const { s, dep, points } = await history(t, root);
    // An older point of the newest chain, restored in full.
    const older = nth(await restoreDeployment(dep, { date: nth(points, 3).stamp, keepOld: false }), 0);
    assert.equal(older.mode, 'full');
    assert.equal(md5File(s.file), nth(points, 3).md5);
    const blobsBefore = blobFiles(s.blobDir);
    const inodes = new Map(blobsBefore.map((rel) => [rel, fs.statSync(path.join(s.blobDir, rel)).ino]));

    const plan = nth(await planOf(dep, {}), 0);
    assert.equal(plan.mode, 'incremental');
    assert.equal(plan.appendAfter, 1);
    const inc = nth(await restoreDeployment(dep, {}), 0);
    assert.equal(inc.mode, 'incremental');
    assert.equal(inc.stamp, nth(points, 5).stamp);
    assert.equal(inc.bytesWritten, nth(points, 4).pieceBytes + nth(points, 5).pieceBytes, 'only the missing bytes');
    assert.equal(inc.bytesWritten, nth(points, 5).size - nth(points, 3).size);
    const added = Object.keys(nth(points, 5).blobs).filter((r) => !blobsBefore.includes(r));
    assert.ok(added.length > 0);
    assert.equal(inc.blobFilesAdded, added.length, 'only the missing blobs');
    for (const [rel, ino] of inodes) assert.equal(fs.statSync(path.join(s.blobDir, rel)).ino, ino, `${rel} was left in place`);
    assert.deepEqual(inc.keptOld, []);
    assert.equal(md5File(s.file), nth(points, 5).md5);
    await assertConsistent(s.file, s.blobDir);

    // The same state restored in full into another folder: byte for byte the same.
    const other = tmpDir(t);
    const target: Deployment = {
      ...dep,
      root: other,
      storages: dep.storages.map((x) => ({ ...x, file: path.join(other, 'filestorage', 'Data.fs'), blobDir: path.join(other, 'blobstorage') })),
    };
    const src = nth(dep.storages, 0).dirs;
    const full = nth(await restoreDeployment(target, { source: () => ({ type: 'repository', repo: src.backups, blobs: src.blobBackups }), incremental: false }), 0);
    assert.equal(full.mode, 'full');
    assert.deepEqual(fs.readFileSync(nth(target.storages, 0).file), fs.readFileSync(s.file));
    assert.deepEqual(fs.readFileSync(`${nth(target.storages, 0).file}.index`), fs.readFileSync(`${s.file}.index`));
    assert.deepEqual(blobContents(nth(target.storages, 0).blobDir!), blobContents(s.blobDir));
    assert.deepEqual(blobContents(s.blobDir), nth(points, 5).blobs);

    // Once there, a restore of the same point changes nothing.
    const same = nth(await restoreDeployment(dep, {}), 0);
    assert.equal(same.mode, 'unchanged');
    assert.equal(same.bytesWritten, 0);
    assert.equal(same.blobFilesAdded, 0);
    // --full-restore still replaces everything.
    const forced = nth(await restoreDeployment(dep, { incremental: false, keepOld: false }), 0);
    assert.equal(forced.mode, 'full');
    assert.equal(md5File(s.file), nth(points, 5).md5);
  });

  it('an incremental restore costs what changed: no full piece is read, only added blob files are looked for', async (t) => {
    const root = tmpDir(t);
    const { s, dep, points } = await history(t, root);
    // The live site at the full backup of point 2; the newest state is three pieces on.
    await restoreDeployment(dep, { date: nth(points, 2).stamp, keepOld: false });
    assert.equal(md5File(s.file), nth(points, 2).md5);
    const plan = nth(await planOf(dep, {}), 0);
    assert.equal(plan.mode, 'incremental');
    assert.equal(plan.appendAfter, 0);
    assert.equal(plan.baseGeneration?.name, `blobstorage.${nth(points, 2).stamp}.json`);

    // The full piece is gzipped (the default): were it gunzipped to compare its last
    // bytes, a garbled copy of it would make the restore fall back to a full one and fail.
    const repo = nth(dep.storages, 0).dirs.backups;
    const fullPiece = path.join(repo, `${nth(points, 2).stamp}.fsz`);
    assert.ok(fs.existsSync(fullPiece));
    const saved = fs.readFileSync(fullPiece);
    fs.writeFileSync(fullPiece, Buffer.alloc(saved.length, 0x55));
    // A blob file of the live state gone behind the site's back: the incremental restore
    // trusts the live blobstorage for the files its Data.fs already had (as the site does)...
    const shared = Object.keys(nth(points, 2).blobs).filter((r) => r in nth(points, 5).blobs);
    assert.ok(shared.length > 0);
    fs.rmSync(path.join(s.blobDir, nth(shared, 0)));
    const inc = nth(await restoreDeployment(dep, {}), 0);
    fs.writeFileSync(fullPiece, saved);
    assert.equal(inc.mode, 'incremental');
    assert.equal(md5File(s.file), nth(points, 5).md5);
    const added = Object.keys(nth(points, 5).blobs).filter((r) => !(r in nth(points, 2).blobs));
    assert.ok(added.length > 0);
    assert.equal(inc.blobFilesAdded, added.length, 'only the files added since the live state');
    assert.ok(!fs.existsSync(path.join(s.blobDir, nth(shared, 0))));
    // ... and `check` is what finds such a file; a full restore puts it back.
    const findings = await checkDeployment(dep, { liveOnly: true });
    assert.ok(
      findings.some((f) => f.code === 'BLOB_MISSING' && f.message.includes(path.basename(nth(shared, 0)))),
      JSON.stringify(findings),
    );
    await restoreDeployment(dep, { incremental: false, keepOld: false });
    assert.deepEqual(blobContents(s.blobDir), nth(points, 5).blobs);
  });

  it('an incremental restore adds the own blob file of an appended undo of a blob revision', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root, { files: 1 });
    const dep = await discoverDeployment(root);
    const clock = fakeClock('2026-06-01-10-00-00', 3600);
    const oid = await s.site.uploadFile('a.pdf', content('v1', 3000));
    const v1pos = s.site.writer.index.get(oid)!;
    const b0 = nth(await backupDeployment(dep, 'backup', { now: clock.now }), 0);
    // A new revision, then an undo back to v1: a record with a back pointer into the
    // older part of Data.fs, whose blob file ZODB writes anew under the undo's tid.
    await s.site.uploadFile('a.pdf', content('v2', 3000), oid);
    await s.site.writer.commit({ description: 'Undo', records: [{ oid, backpointer: v1pos, blob: content('v1', 3000) }] });
    const b1 = nth(await backupDeployment(dep, 'backup', { now: clock.now }), 0);
    assert.equal(b1.filestorage.action, 'incremental');
    const newest = blobContents(s.blobDir);
    await s.site.close();

    await restoreDeployment(dep, { date: b0.filestorage.stamp, keepOld: false });
    const inc = nth(await restoreDeployment(dep, { keepOld: false }), 0);
    assert.equal(inc.mode, 'incremental');
    assert.equal(inc.blobFilesAdded, 2, 'the new revision and the undo');
    assert.deepEqual(blobContents(s.blobDir), newest);
    await assertConsistent(s.file, s.blobDir);
  });

  it('a live Data.fs of the right size whose last transaction differs is restored in full', async (t) => {
    const root = tmpDir(t);
    const { s, dep, points } = await history(t, root);
    await restoreDeployment(dep, { date: nth(points, 2).stamp, keepOld: false });
    // Another history of the same length: the last transaction's tid differs.
    const fd = fs.openSync(s.file, 'r+');
    const size = fs.fstatSync(fd).size;
    const b = Buffer.alloc(8);
    fs.readSync(fd, b, 0, 8, size - 8);
    const tpos = size - 8 - Number(b.readBigUInt64BE(0));
    const tid = Buffer.alloc(8);
    fs.readSync(fd, tid, 0, 8, tpos);
    xorByte(tid, 7, 1);
    fs.writeSync(fd, tid, 0, 8, tpos);
    fs.closeSync(fd);
    const plan = nth(await planOf(dep, {}), 0);
    assert.equal(plan.mode, 'full');
    const r = nth(await restoreDeployment(dep, { keepOld: false }), 0);
    assert.equal(r.mode, 'full');
    assert.equal(md5File(s.file), nth(points, 5).md5);
  });

  it('with no date restores the newest backup, even when its stamp is ahead of the clock', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root);
    const dep = await discoverDeployment(root);
    // Backups in one second take the next free stamps; here they are all in the future.
    const clock = fakeClock('2099-01-01-00-00-00', 1);
    await backupDeployment(dep, 'backup', { now: clock.now });
    await s.site.uploadFile('late.pdf', content('late'));
    const r2 = nth(await backupDeployment(dep, 'backup', { now: clock.now }), 0);
    const newest = md5File(s.file);
    await s.site.close();
    const plan = nth(await planOf(dep, {}), 0);
    assert.equal(plan.stamp, r2.filestorage.stamp);
    assert.equal(plan.mode, 'unchanged');
    const r = nth(await restoreDeployment(dep, { incremental: false }), 0);
    assert.equal(r.stamp, r2.filestorage.stamp);
    assert.equal(md5File(s.file), newest);
    await assertConsistent(s.file, s.blobDir);
  });

  it('plans every storage before touching any: a missing catalog generation changes nothing', async (t) => {
    const root = tmpDir(t);
    const main = await makeSite(t, root);
    const cat = await makeSite(t, root, { name: 'catalog' });
    const dep = await discoverDeployment(root);
    const clock = fakeClock();
    const res = await backupDeployment(dep, 'backup', { now: clock.now });
    await main.site.addDocument('more');
    await cat.site.addDocument('more');
    await main.site.close();
    await cat.site.close();
    fs.rmSync(res.find((r) => r.storage === 'catalog')!.blobGeneration!, { recursive: true });
    const before = snapshot(main.varDir);
    const e = await rejectsWith(restoreDeployment(dep, {}), 'NOT_FOUND');
    assert.match(e.message, /no blob backup for catalog/);
    assert.deepEqual(snapshot(main.varDir), before);
    // Before any backup date: NO_BACKUPS, nothing changed.
    await rejectsWith(restoreDeployment(dep, { date: '2020-01-01' }), 'NO_BACKUPS');
    assert.deepEqual(snapshot(main.varDir), before);
  });

  it('restores both storages of a deployment together', async (t) => {
    const root = tmpDir(t);
    const main = await makeSite(t, root);
    const cat = await makeSite(t, root, { name: 'catalog', files: 3 });
    const dep = await discoverDeployment(root);
    const res = await backupDeployment(dep, 'backup', { now: fakeClock().now });
    const want = { main: md5File(main.file), catalog: md5File(cat.file) };
    await main.site.uploadFile('x', content('x'));
    await cat.site.uploadFile('y', content('y'));
    await main.site.close();
    await cat.site.close();
    // Each storage takes its own stamp (the catalog first); the date covers both.
    const date = res
      .map((r) => r.filestorage.stamp!)
      .sort()
      .at(-1)!;
    const out = await restoreDeployment(dep, { date });
    assert.deepEqual(out.map((r) => r.storage).sort(), ['catalog', 'main']);
    assert.equal(md5File(main.file), want.main);
    assert.equal(md5File(cat.file), want.catalog);
    await assertConsistent(main.file, main.blobDir);
    await assertConsistent(cat.file, cat.blobDir);
  });
});

/**
 * Runs the CLI on a pseudo-terminal (so it may ask), answering `answer` only
 * if and when it asks "Are you sure?". Returns everything it printed.
 */
function runCliTty(args: string[], answer: string): { status: number | null; output: string } {
  const py = [
    'import os, pty, sys',
    'pid, fd = pty.fork()',
    'if pid == 0:',
    '    os.execv(sys.argv[1], sys.argv[1:])',
    'out, sent = b"", False',
    'while True:',
    '    try:',
    '        chunk = os.read(fd, 4096)',
    '    except OSError:',
    '        break',
    '    if not chunk:',
    '        break',
    '    out += chunk',
    '    if not sent and b"(yes/No)?" in out:',
    '        os.write(fd, os.environ["ANSWER"].encode())',
    '        sent = True',
    '_, status = os.waitpid(pid, 0)',
    'sys.stdout.buffer.write(out)',
    'sys.exit(os.waitstatus_to_exitcode(status))',
  ].join('\n');
  const r = spawnSync('python3', ['-c', py, process.execPath, CLI, ...args], {
    encoding: 'utf8',
    env: { ...process.env, ANSWER: answer, PLONE_BACKUP_DEBUG: '' },
    timeout: 60_000,
  });
  return { status: r.status, output: r.stdout + r.stderr };
}

describe('a restore session: locks, the running check and the plan first, then exactly that plan', () => {
  it('plans under the locks: a backup cannot change what is restored, no Zope can start, the plan shown is the plan run', async (t) => {
    const root = tmpDir(t);
    const { s, dep, points } = await history(t, root);
    const session = await openRestore(dep, { date: nth(points, 3).stamp });
    try {
      const plan = nth(session.plans, 0);
      assert.equal(plan.stamp, nth(points, 3).stamp);
      assert.equal(plan.mode, 'full');
      assert.equal(session.keepOld, true, 'the default is decided by the engine');
      // ZODB's lock is held by the session: a Zope starting now refuses to open the storage.
      assert.equal((await siteRunning(s.file))?.evidence, 'lock held');
      // A backup meanwhile waits for the repository the plan was made from.
      await rejectsWith(backupDeployment(dep, 'fullbackup', { lockWaitMs: 100 }), 'LOCKED');
      const r = nth(await session.run(), 0);
      assert.equal(r.stamp, plan.stamp);
      assert.equal(r.mode, plan.mode);
      assert.equal(md5File(s.file), nth(points, 3).md5);
      await assert.rejects(session.run(), /run\(\) on a session that is ran/, 'a session runs once');
    } finally {
      await session.close();
    }
    assert.equal(await siteRunning(s.file), undefined, 'closing lets go of the site');
    assert.ok(!fs.existsSync(`${s.file}.lock`), 'the lock file the session made is gone');
    await backupDeployment(dep, 'backup', { lockWaitMs: 100 });
  });

  it('a running site is refused before anything is planned or asked; a declined session changes nothing', async (t) => {
    const root = tmpDir(t);
    const { s, dep, points } = await history(t, root);
    const before = snapshot(s.varDir);
    // Declined: opened, shown, closed.
    const declined = await openRestore(dep, { date: nth(points, 1).stamp });
    assert.equal(declined.plans.length, 1);
    await declined.close();
    await declined.close();
    assert.deepEqual(snapshot(s.varDir), before);
    await backupDeployment(dep, 'backup', { lockWaitMs: 100 }); // the repository lock was let go

    // Without a lock, the CLI on a terminal shows the plan and asks.
    const asked = runCliTty(['restore', nth(points, 1).stamp, '--dir', root], 'no\n');
    assert.equal(asked.status, 1, asked.output);
    assert.match(asked.output, /This will restore:[\s\S]*main: replace .*Data\.fs/);
    assert.match(asked.output, /Are you sure\? \(yes\/No\)\?/);
    assert.match(asked.output, /Nothing was restored\./);

    // A running site: refused before the question, even on a terminal answering yes.
    await holdSiteLock(t, s.file);
    const withLock = snapshot(s.varDir);
    const e = await rejectsWith(openRestore(dep, { date: nth(points, 1).stamp }), 'SITE_RUNNING');
    assert.match(e.message, /nothing was restored/);
    const r = runCliTty(['restore', nth(points, 1).stamp, '--dir', root], 'yes\n');
    assert.equal(r.status, 1, r.output);
    assert.match(r.output, /The site is running: .*Data\.fs\.lock is held/);
    assert.doesNotMatch(r.output, /This will restore|Are you sure/);
    assert.deepEqual(snapshot(s.varDir), withLock, 'nothing changed');
  });

  it("one keep-aside scheme for recover and restore, on the operation's clock", async (t) => {
    const root = tmpDir(t);
    const { s, dep, points } = await history(t, root);
    fs.writeFileSync(`${s.file}.index`, 'old index');
    const live = md5File(s.file);
    const stamp = '2026-07-02-00-00-00';
    const r = nth(await restoreDeployment(dep, { date: nth(points, 1).stamp, now: at(stamp) }), 0);
    const kept = `${s.file}.before-restore-${stamp}`;
    assert.deepEqual(r.keptOld.sort(), [`${s.blobDir}.before-restore-${stamp}`, kept, `${kept}.index`].sort());
    assert.equal(md5File(kept), live);
    assert.equal(fs.readFileSync(`${kept}.index`, 'utf8'), 'old index', 'the index goes with its Data.fs');
    // repozo -R -o over the same file in the same second: the same names, the next free one.
    const rec = await recover({ repository: path.join(s.varDir, 'backups'), output: s.file, date: nth(points, 2).stamp, now: at(stamp) });
    assert.deepEqual(rec.keptOld, [`${kept}-1`, `${kept}-1.index`]);
    assert.equal(md5File(`${kept}-1`), nth(points, 1).md5);
    assert.equal(md5File(s.file), nth(points, 2).md5);
  });
});

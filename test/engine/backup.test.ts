/**
 * repozo -B: the engine reproduces, byte for byte, the repositories the real
 * repozo wrote for S1..S6 (plain and gzip, non-quick and quick), and does
 * better where repozo has flaws: same-second stamps, leftovers of killed
 * runs, kill-old, a source that is not (or no longer) a good Data.fs.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { backup, chooseStamp, cleanLeftovers, fileLayer, FileStorageWriter, killOld, parseDat, recover, verify } from '../../src/engine/internal';
import { rejectsWith } from '../support/assert';
import { at, history, replayHistory, stateJson, statePath } from '../support/fixtures';
import { copy, md5, names, snapshot, tmpDir } from '../support/fs';
import { FIXTURE_REPO, FIXTURE_REPO_GZ, FIXTURES } from '../support/paths';
import { nth } from '../support/must';

/** Compares a repository we wrote with the fixture repository repozo wrote. */
function assertSameRepository(ours: string, theirs: string): void {
  assert.deepEqual(names(ours), names(theirs));
  for (const n of names(theirs)) {
    const a = fs.readFileSync(path.join(ours, n));
    const b = fs.readFileSync(path.join(theirs, n));
    if (n.endsWith('z')) {
      // Any gzip will do; the uncompressed bytes must be the same.
      assert.ok(zlib.gunzipSync(a).equals(zlib.gunzipSync(b)), `${n} decompresses to other bytes`);
    } else {
      assert.ok(a.equals(b), `${n} differs from repozo's`);
    }
  }
}

const EXPECTED_ACTIONS = ['full', 'incremental', 'incremental', 'incremental', 'full', 'incremental'];

describe('backup: reproduces the repozo repositories', () => {
  for (const quick of [false, true]) {
    for (const gzip of [false, true]) {
      it(`${gzip ? 'gzip' : 'plain'}${quick ? ', quick (-Q)' : ''}: S1..S6 give repozo's files`, async (t) => {
        const dir = tmpDir(t);
        const { repo, results } = await replayHistory(dir, { gzip, quick });
        assert.deepEqual(
          results.map((r) => r.action),
          EXPECTED_ACTIONS,
        );
        const steps = history().steps;
        results.forEach((r, i) => {
          assert.equal(r.stamp, nth(steps, i).stamp);
          assert.equal(r.end, nth(steps, i).size);
          assert.equal(r.lastTid, nth(steps, i).last_tid);
        });
        assert.match(nth(results, 4).reason, /pack/);
        assertSameRepository(repo, gzip ? FIXTURE_REPO_GZ : FIXTURE_REPO);
        // Both kinds hold the same uncompressed pieces and the same .index files.
        if (gzip) {
          const dat = parseDat(fs.readFileSync(path.join(repo, '2026-01-05-10-00-00.dat'), 'latin1'));
          assert.deepEqual(
            dat.map((l) => l.path),
            ['repository-gzip/2026-01-05-10-00-00.fsz', 'repository-gzip/2026-01-06-10-00-00.deltafsz'],
          );
        }
      });
    }
  }

  it('a second run without changes writes nothing', async (t) => {
    const dir = tmpDir(t);
    const { repo, data } = await replayHistory(dir, { steps: 6 });
    for (const quick of [false, true]) {
      const before = snapshot(repo);
      const r = await backup({ file: data, repository: repo, now: at('2026-01-07-10-00-00'), quick, datPrefix: 'repository' });
      assert.equal(r.action, 'none');
      assert.deepEqual(r.written, []);
      assert.deepEqual(snapshot(repo), before);
    }
  });

  it('-F forces a full backup whose bytes equal Data.fs', async (t) => {
    const dir = tmpDir(t);
    const { repo, data } = await replayHistory(dir, { steps: 3 });
    const r = await backup({ file: data, repository: repo, now: at('2026-01-04-00-00-00'), full: true });
    assert.equal(r.action, 'full');
    assert.equal(r.piece, '2026-01-04-00-00-00.fs');
    assert.ok(fs.readFileSync(path.join(repo, r.piece!)).equals(fs.readFileSync(statePath(3))));
    assert.ok(fs.readFileSync(path.join(repo, '2026-01-04-00-00-00.index')).equals(fs.readFileSync(path.join(FIXTURE_REPO, '2026-01-03-10-00-00.index'))));
    assert.equal(fs.readFileSync(path.join(repo, '2026-01-04-00-00-00.dat'), 'latin1'), `${repo}/2026-01-04-00-00-00.fs 0 7412 ${md5(fs.readFileSync(statePath(3)))}\n`);
  });

  it('an incremental whose chain lost its last .index rebuilds the same index', async (t) => {
    const dir = tmpDir(t);
    const { repo, data } = await replayHistory(dir, { steps: 2 });
    fs.rmSync(path.join(repo, '2026-01-02-10-00-00.index'));
    fs.copyFileSync(statePath(3), data);
    const r = await backup({ file: data, repository: repo, now: at('2026-01-03-10-00-00'), datPrefix: 'repository' });
    assert.equal(r.action, 'incremental');
    assert.ok(fs.readFileSync(path.join(repo, '2026-01-03-10-00-00.index')).equals(fs.readFileSync(path.join(FIXTURE_REPO, '2026-01-03-10-00-00.index'))));
  });

  it('FS21 files are backed up with their magic', async (t) => {
    const dir = tmpDir(t);
    const data = path.join(dir, 'Data.fs');
    const b = fs.readFileSync(statePath(2));
    b.write('FS21', 0, 'latin1');
    fs.writeFileSync(data, b);
    const repo = path.join(dir, 'repo');
    fs.mkdirSync(repo);
    const r = await backup({ file: data, repository: repo, now: at('2026-02-01-00-00-00') });
    assert.equal(r.action, 'full');
    assert.ok(fs.readFileSync(path.join(repo, r.piece!)).equals(b));
    const out = path.join(dir, 'restored.fs');
    await recover({ repository: repo, output: out, date: '2026-02-02' });
    assert.ok(fs.readFileSync(out).equals(b));
  });
});

describe('backup: a live Data.fs', () => {
  it('copies only committed transactions, then continues from there', async (t) => {
    const dir = tmpDir(t);
    const repo = path.join(dir, 'repo');
    fs.mkdirSync(repo);
    const data = path.join(dir, 'Data.fs');
    copy(path.join(FIXTURES, 'torn-tails', 'checkpoint.fs'), data);
    const r1 = await backup({ file: data, repository: repo, now: at('2026-02-01-00-00-00') });
    assert.equal(r1.action, 'full');
    assert.equal(r1.end, 7232);
    assert.ok(fs.readFileSync(path.join(repo, r1.piece!)).equals(fs.readFileSync(statePath(3)).subarray(0, 7232)));
    // The writer finished: now the file is S3.
    fs.copyFileSync(path.join(FIXTURES, 'torn-tails', 'complete.fs'), data);
    for (const quick of [true, false]) {
      const r = await backup({ file: data, repository: repo, now: at('2026-02-01-00-00-00'), quick, full: false });
      if (quick) {
        assert.equal(r.action, 'incremental');
        assert.equal(r.start, 7232);
        assert.equal(r.end, 7412);
        assert.equal(r.stamp, '2026-02-01-00-00-01');
      } else assert.equal(r.action, 'none');
    }
    const out = path.join(dir, 'out.fs');
    await recover({ repository: repo, output: out, date: '2026-02-02' });
    assert.ok(fs.readFileSync(out).equals(fs.readFileSync(statePath(3))));
    assert.ok(fs.readFileSync(out + '.index').equals(fs.readFileSync(path.join(FIXTURE_REPO, '2026-01-03-10-00-00.index'))));
  });

  for (const name of ['half-header.fs', 'half-data.fs', 'no-trailer.fs', 'garbage-after.fs']) {
    it(`torn tail ${name}: the piece ends at the committed end`, async (t) => {
      const dir = tmpDir(t);
      const repo = path.join(dir, 'repo');
      fs.mkdirSync(repo);
      const cases = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'torn-tails', 'cases.json'), 'utf8'));
      const r = await backup({ file: path.join(FIXTURES, 'torn-tails', name), repository: repo, now: at('2026-02-01-00-00-00') });
      assert.equal(r.end, cases[name].valid_end);
      assert.equal(fs.statSync(path.join(repo, r.piece!)).size, cases[name].valid_end);
    });
  }
});

describe('backup: quick mode with a big last piece', () => {
  it('compares the tail of the range with the piece (> 64 MB), and notices a change there', async (t) => {
    const dir = tmpDir(t);
    const repo = path.join(dir, 'repo');
    fs.mkdirSync(repo);
    const data = path.join(dir, 'Data.fs');
    const w = await FileStorageWriter.create(data);
    t.after(() => w.close());
    await w.commit({ records: [{ oid: 0, data: Buffer.alloc(1000, 1) }] });
    const big = Buffer.alloc(65 * 1024 * 1024);
    for (let i = 0; i < big.length; i += 4096) big[i] = i & 0xff;
    await w.commit({ records: [{ oid: 1, data: big }] });
    const full = await backup({ file: data, repository: repo, now: at('2026-02-01-00-00-00') });
    assert.equal(full.action, 'full');
    assert.ok(full.end > 64 * 1024 * 1024);
    // A change inside the tail of the big range: a full backup.
    const fh = fs.openSync(data, 'r+');
    fs.writeSync(fh, Buffer.from([0xff]), 0, 1, full.end - 100);
    fs.closeSync(fh);
    const changed = await backup({ file: data, repository: repo, quick: true, now: at('2026-02-01-00-00-01') });
    assert.equal(changed.action, 'full', changed.reason);
    assert.match(changed.reason, /the end of the backed-up range/, 'the tail comparison decided');
    // Unchanged, grown: an incremental from the end of the big piece.
    await w.commit({ records: [{ oid: 0, data: Buffer.alloc(500, 2) }] });
    await w.close();
    const inc = await backup({ file: data, repository: repo, quick: true, now: at('2026-02-01-00-00-02') });
    assert.equal(inc.action, 'incremental', inc.reason);
    assert.equal(inc.start, full.end);
    assert.equal(inc.end, fs.statSync(data).size);
    const out = path.join(dir, 'out.fs');
    await recover({ repository: repo, output: out, withVerify: true, date: '2026-02-02' });
    assert.ok(fs.readFileSync(out).equals(fs.readFileSync(data)));
  });
});

describe('backup: better than repozo', () => {
  it('two backups in the same second never collide', async (t) => {
    const dir = tmpDir(t);
    const repo = path.join(dir, 'repo');
    fs.mkdirSync(repo);
    const data = path.join(dir, 'Data.fs');
    const now = at('2026-03-01-12-00-00');
    fs.copyFileSync(statePath(1), data);
    const a = await backup({ file: data, repository: repo, now });
    fs.copyFileSync(statePath(2), data);
    const b = await backup({ file: data, repository: repo, now });
    fs.copyFileSync(statePath(3), data);
    const c = await backup({ file: data, repository: repo, now, full: true });
    assert.deepEqual([a.stamp, b.stamp, c.stamp], ['2026-03-01-12-00-00', '2026-03-01-12-00-01', '2026-03-01-12-00-02']);
    assert.deepEqual([a.action, b.action, c.action], ['full', 'incremental', 'full']);
    const out = path.join(dir, 'out.fs');
    for (const [date, n] of [
      ['2026-03-01-12-00-00', 1],
      ['2026-03-01-12-00-01', 2],
      ['2026-03-01-12-00-02', 3],
    ] as [string, number][]) {
      await recover({ repository: repo, output: out, date, keepOld: false });
      assert.ok(fs.readFileSync(out).equals(fs.readFileSync(statePath(n))), date);
    }
  });

  it('without a date, recover and verify take the newest backup, even one stamped ahead of the clock', async (t) => {
    const dir = tmpDir(t);
    const repo = path.join(dir, 'repo');
    fs.mkdirSync(repo);
    const data = path.join(dir, 'Data.fs');
    fs.copyFileSync(statePath(1), data);
    await backup({ file: data, repository: repo, now: () => new Date(Date.now() - 10_000) });
    fs.copyFileSync(statePath(2), data);
    // A bumped stamp (same-second backups) lies ahead of the real clock.
    const r = await backup({ file: data, repository: repo, now: () => new Date(Date.now() + 3_600_000) });
    assert.equal(r.action, 'incremental');
    const out = path.join(dir, 'out.fs');
    const rec = await recover({ repository: repo, output: out });
    assert.equal(rec.stamp, r.stamp);
    assert.ok(fs.readFileSync(out).equals(fs.readFileSync(statePath(2))));
    const v = await verify({ repository: repo });
    assert.deepEqual(
      v.pieces.map((p) => p.name),
      names(repo).filter((n) => /\.(fs|deltafs)$/.test(n)),
    );
    assert.equal(v.pieces.length, 2);
  });

  it('a clock that went back still gets a stamp after the newest file', () => {
    assert.equal(chooseStamp(['2026-01-05-10-00-00.fs', '2026-01-05-10-00-00.dat'], new Date(Date.UTC(2026, 0, 1))), '2026-01-05-10-00-01');
    assert.equal(chooseStamp(['2026-01-05-10-00-00.fs', 'README'], new Date(Date.UTC(2026, 0, 6))), '2026-01-06-00-00-00');
    assert.equal(chooseStamp(['2026-01-05-10-00-59.index'], new Date(Date.UTC(2026, 0, 5, 10, 0, 59))), '2026-01-05-10-01-00');
    assert.equal(chooseStamp([], new Date(Date.UTC(2026, 0, 5, 10, 0, 59, 999))), '2026-01-05-10-00-59');
  });

  it('kill-old (-k) removes the pieces older than a new full backup', async (t) => {
    const dir = tmpDir(t);
    const { repo, data } = await replayHistory(dir, { steps: 4 });
    fs.writeFileSync(path.join(repo, 'notes.txt'), 'mine');
    fs.copyFileSync(statePath(5), data);
    const r = await backup({ file: data, repository: repo, now: at('2026-01-05-10-00-00'), killOld: true, datPrefix: 'repository' });
    assert.equal(r.action, 'full');
    assert.deepEqual(names(repo), ['2026-01-05-10-00-00.dat', '2026-01-05-10-00-00.fs', '2026-01-05-10-00-00.index', 'notes.txt']);
    assert.deepEqual([...r.removed].sort(), [
      '2026-01-01-10-00-00.dat',
      '2026-01-01-10-00-00.fs',
      '2026-01-01-10-00-00.index',
      '2026-01-02-10-00-00.deltafs',
      '2026-01-02-10-00-00.index',
      '2026-01-03-10-00-00.deltafs',
      '2026-01-03-10-00-00.index',
      '2026-01-04-10-00-00.deltafs',
      '2026-01-04-10-00-00.index',
    ]);
    // An incremental with -k removes nothing.
    fs.copyFileSync(statePath(6), data);
    const r2 = await backup({ file: data, repository: repo, now: at('2026-01-06-10-00-00'), killOld: true, datPrefix: 'repository' });
    assert.equal(r2.action, 'incremental');
    assert.deepEqual(r2.removed, []);
    assertSameRepositoryPart(repo, FIXTURE_REPO, ['2026-01-05-10-00-00.dat', '2026-01-05-10-00-00.fs', '2026-01-06-10-00-00.deltafs', '2026-01-06-10-00-00.index']);
    // killOld by itself keeps the given full and what follows.
    assert.deepEqual(await killOld(repo, '2026-01-05-10-00-00'), []);
  });

  it('cleanLeftovers removes temp files and an unregistered newest piece, nothing else', async (t) => {
    const dir = tmpDir(t);
    const { repo } = await replayHistory(dir, { steps: 3 });
    const good = snapshot(repo);
    // What a run killed at different moments leaves behind.
    fs.writeFileSync(path.join(repo, '.plone-backup-2026-01-04-10-00-00.deltafs.123.abcd.tmp'), 'partial');
    fs.writeFileSync(path.join(repo, '.plone-backup-2026-01-03-10-00-00.dat.123.abce.tmp'), 'partial');
    fs.writeFileSync(path.join(repo, '2026-01-04-10-00-00.deltafs'), 'never registered');
    fs.writeFileSync(path.join(repo, '2026-01-04-10-00-00.index'), 'never registered');
    const removed = await cleanLeftovers(repo);
    assert.deepEqual([...removed].sort(), [
      '.plone-backup-2026-01-03-10-00-00.dat.123.abce.tmp',
      '.plone-backup-2026-01-04-10-00-00.deltafs.123.abcd.tmp',
      '2026-01-04-10-00-00.deltafs',
      '2026-01-04-10-00-00.index',
    ]);
    assert.deepEqual(snapshot(repo), good);
    // An .index whose piece never got renamed into place.
    fs.writeFileSync(path.join(repo, '2026-01-04-10-00-00.index'), 'orphan');
    assert.deepEqual(await cleanLeftovers(repo), ['2026-01-04-10-00-00.index']);
    // A full backup killed before its .dat was written.
    fs.writeFileSync(path.join(repo, '2026-01-05-10-00-00.fs'), 'FS30');
    fs.writeFileSync(path.join(repo, '2026-01-05-10-00-00.index'), 'x');
    assert.deepEqual([...(await cleanLeftovers(repo))].sort(), ['2026-01-05-10-00-00.dat', '2026-01-05-10-00-00.fs', '2026-01-05-10-00-00.index']);
    assert.deepEqual(snapshot(repo), good);
    // A clean repository loses nothing.
    assert.deepEqual(await cleanLeftovers(repo), []);
    assert.deepEqual(snapshot(repo), good);
  });

  it('the next backup cleans up a killed run and then works', async (t) => {
    const dir = tmpDir(t);
    const { repo, data } = await replayHistory(dir, { steps: 3 });
    fs.writeFileSync(path.join(repo, '2026-01-04-10-00-00.deltafs'), 'never registered');
    fs.writeFileSync(path.join(repo, '.plone-backup-x.tmp'), '');
    fs.copyFileSync(statePath(4), data);
    const r = await backup({ file: data, repository: repo, now: at('2026-01-04-10-00-00'), datPrefix: 'repository' });
    assert.equal(r.action, 'incremental');
    assert.equal(r.stamp, '2026-01-04-10-00-00');
    assertSameRepositoryPart(
      repo,
      FIXTURE_REPO,
      names(FIXTURE_REPO).filter((n) => n < '2026-01-05'),
    );
    assert.deepEqual(
      names(repo),
      names(FIXTURE_REPO).filter((n) => n < '2026-01-05'),
    );
  });

  it('a full disk fails with IO and leaves the repository as it was', async (t) => {
    const dir = tmpDir(t);
    const { repo, data } = await replayHistory(dir, { steps: 2 });
    fs.copyFileSync(statePath(3), data);
    const before = snapshot(repo);
    const orig = fileLayer.open;
    fileLayer.open = async () => {
      throw Object.assign(new Error('no space'), { code: 'ENOSPC' });
    };
    t.after(() => {
      fileLayer.open = orig;
    });
    for (const full of [false, true]) {
      const e = await rejectsWith(backup({ file: data, repository: repo, now: at('2026-01-03-10-00-00'), full }), 'IO');
      assert.match(e.userMessage, /disk/i);
      assert.deepEqual(snapshot(repo), before);
    }
    fileLayer.open = orig;
    const r = await backup({ file: data, repository: repo, now: at('2026-01-03-10-00-00'), datPrefix: 'repository' });
    assert.equal(r.action, 'incremental');
  });

  it('an aborted backup is ABORTED and changes nothing', async (t) => {
    const dir = tmpDir(t);
    const { repo, data } = await replayHistory(dir, { steps: 2 });
    fs.copyFileSync(statePath(3), data);
    const before = snapshot(repo);
    const ac = new AbortController();
    ac.abort();
    await rejectsWith(backup({ file: data, repository: repo, now: at('2026-01-03-10-00-00'), signal: ac.signal }), 'ABORTED');
    assert.deepEqual(snapshot(repo), before);
  });
});

describe('backup: bad sources change nothing', () => {
  const cases: [string, (f: string) => void, string][] = [
    ['an empty Data.fs', (f) => fs.writeFileSync(f, ''), 'NOT_FILESTORAGE'],
    ['a foreign file', (f) => fs.writeFileSync(f, '<html>not a database</html>\n'), 'NOT_FILESTORAGE'],
    ['a missing Data.fs', (f) => fs.rmSync(f, { force: true }), 'SOURCE_MISSING'],
    [
      'a Data.fs damaged in the middle',
      (f) => {
        // S6 (packed, so every kind of backup is a full one) with a record in a
        // middle transaction pointing to the wrong transaction.
        fs.copyFileSync(statePath(6), f);
        const rec = nth(nth(stateJson(6).transactions, 3).records, 0);
        const b = fs.readFileSync(f);
        b.writeUInt32BE(b.readUInt32BE(rec.pos + 28) + 8, rec.pos + 28);
        fs.writeFileSync(f, b);
      },
      'FS_CORRUPT',
    ],
  ];
  for (const [name, make, code] of cases) {
    it(`${name}: ${code}`, async (t) => {
      const dir = tmpDir(t);
      const { repo, data } = await replayHistory(dir, { steps: 3 });
      make(data);
      const before = snapshot(dir);
      for (const opts of [{}, { quick: true }, { full: true }, { gzip: true }]) {
        await rejectsWith(backup({ file: data, repository: repo, now: at('2026-01-04-10-00-00'), lockWaitMs: 0, ...opts }), code as never);
        assert.deepEqual(snapshot(dir), before, JSON.stringify(opts));
      }
      assert.ok(names(repo).every((n) => !n.startsWith('.')));
    });
  }

  it('a missing repository is REPO_MISSING', async (t) => {
    const dir = tmpDir(t);
    await rejectsWith(backup({ file: statePath(1), repository: path.join(dir, 'nope') }), 'REPO_MISSING');
    assert.deepEqual(names(dir), []);
  });
});

function assertSameRepositoryPart(ours: string, theirs: string, files: string[]): void {
  for (const n of files) assert.ok(fs.readFileSync(path.join(ours, n)).equals(fs.readFileSync(path.join(theirs, n))), n);
}

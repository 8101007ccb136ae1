/**
 * repozo -R: every stamp of both fixture repositories restores exactly the
 * Data.fs and the .index ZODB had; dates before a stamp restore the state
 * before it; a restore over an existing Data.fs keeps the old one.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { recover } from '../../src/engine/internal';
import { rejectsWith } from '../support/assert';
import { history, statePath } from '../support/fixtures';
import { copy, md5, names, snapshot, tmpDir } from '../support/fs';
import { FIXTURE_REPO, FIXTURE_REPO_GZ } from '../support/paths';
import { nth, take } from '../support/must';

const steps = history().steps;

describe('recover: every stamp of the fixture repositories', () => {
  for (const repo of [FIXTURE_REPO, FIXTURE_REPO_GZ]) {
    for (const withVerify of [false, true]) {
      it(`${path.basename(repo)}${withVerify ? ' with -w' : ''}: each stamp gives Sn.fs and its .index`, async (t) => {
        const dir = tmpDir(t);
        const before = snapshot(repo);
        for (const [i, s] of steps.entries()) {
          const out = path.join(dir, `S${i + 1}`, 'Data.fs');
          fs.mkdirSync(path.dirname(out));
          const r = await recover({ repository: repo, output: out, date: s.stamp, withVerify });
          const want = fs.readFileSync(statePath(i + 1));
          assert.ok(fs.readFileSync(out).equals(want), `S${i + 1}`);
          assert.ok(fs.readFileSync(out + '.index').equals(fs.readFileSync(path.join(repo, `${s.stamp}.index`))), `S${i + 1}.index`);
          assert.equal(r.stamp, s.stamp);
          assert.equal(r.bytes, s.size);
          assert.equal(r.md5, s.md5);
          assert.equal(r.output, out);
          assert.equal(r.index, out + '.index');
          assert.deepEqual(r.keptOld, []);
          assert.ok(r.chain.every((p) => p.checked));
          assert.equal(nth(r.chain, r.chain.length - 1).name.slice(0, 19), s.stamp);
          // Nothing but Data.fs and its index is left beside it.
          assert.deepEqual(names(path.dirname(out)), ['Data.fs', 'Data.fs.index']);
        }
        assert.deepEqual(snapshot(repo), before, 'the repository was not touched');
      });
    }

    it(`${path.basename(repo)}: to a stream`, async () => {
      for (const [i, s] of steps.entries()) {
        const sink = new PassThrough();
        const chunks: Buffer[] = [];
        sink.on('data', (c: Buffer) => chunks.push(c));
        const r = await recover({ repository: repo, stream: sink, date: s.stamp });
        sink.end();
        assert.ok(Buffer.concat(chunks).equals(fs.readFileSync(statePath(i + 1))), `S${i + 1}`);
        assert.equal(r.output, undefined);
        assert.equal(r.md5, s.md5);
      }
    });

    it(`${path.basename(repo)}: dates between stamps`, async (t) => {
      const dir = tmpDir(t);
      const out = path.join(dir, 'Data.fs');
      const cases: [string, number][] = [
        ['2026-01-03', 2], // before that day
        ['2026-01-02-09-59-59', 1],
        ['2026-01-02-10', 1], // 2026-01-02-10 < 2026-01-02-10-00-00 as strings
        ['2026-01-04-11-00-00', 4],
        ['2026-01-05-23', 5],
        ['2099-01-01', 6],
      ];
      for (const [date, n] of cases) {
        await recover({ repository: repo, output: out, date, keepOld: false });
        assert.equal(md5(fs.readFileSync(out)), nth(steps, n - 1).md5, date);
      }
      // No date: now.
      await recover({ repository: repo, output: out, keepOld: false, now: () => new Date(Date.UTC(2026, 0, 4, 12)) });
      assert.equal(md5(fs.readFileSync(out)), nth(steps, 3).md5);
    });

    it(`${path.basename(repo)}: a date before any backup is NO_BACKUPS`, async (t) => {
      const dir = tmpDir(t);
      const out = path.join(dir, 'Data.fs');
      for (const date of ['2026-01-01', '2025-12-31-23-59-59', '2026-01-01-09-59-59']) {
        const e = await rejectsWith(recover({ repository: repo, output: out, date }), 'NO_BACKUPS');
        assert.equal(e.path, repo);
      }
      await rejectsWith(recover({ repository: repo, output: out, now: () => new Date(Date.UTC(2020, 0, 1)) }), 'NO_BACKUPS');
      assert.deepEqual(names(dir), []);
    });
  }
});

describe('recover: replacing an existing Data.fs', () => {
  it('keeps the old one (and its index) under a name that says so', async (t) => {
    const dir = tmpDir(t);
    const out = path.join(dir, 'Data.fs');
    copy(statePath(6), out);
    fs.writeFileSync(out + '.index', 'old index');
    const old = fs.readFileSync(out);
    const r = await recover({ repository: FIXTURE_REPO, output: out, date: '2026-01-03' });
    assert.ok(fs.readFileSync(out).equals(fs.readFileSync(statePath(2))));
    assert.ok(fs.readFileSync(out + '.index').equals(fs.readFileSync(path.join(FIXTURE_REPO, '2026-01-02-10-00-00.index'))));
    assert.equal(r.keptOld?.length, 2);
    const [keptFs, keptIndex] = take(r.keptOld!, 2);
    assert.equal(path.dirname(keptFs), dir);
    assert.match(path.basename(keptFs), /^Data\.fs\.before-restore-\d{4}(-\d\d){5}$/);
    assert.ok(fs.readFileSync(keptFs).equals(old), 'the kept file is the old Data.fs, unchanged');
    assert.equal(keptIndex, keptFs + '.index');
    assert.equal(fs.readFileSync(keptIndex, 'utf8'), 'old index');
    // A second restore keeps the file it replaces under another name.
    const r2 = await recover({ repository: FIXTURE_REPO, output: out, date: '2026-01-02' });
    assert.ok(fs.readFileSync(out).equals(fs.readFileSync(statePath(1))));
    assert.notEqual(r2.keptOld![0], keptFs);
    assert.ok(fs.readFileSync(nth(r2.keptOld!, 0)).equals(fs.readFileSync(statePath(2))));
    assert.ok(fs.readFileSync(keptFs).equals(old));
    assert.equal(names(dir).length, 6);
  });

  it('with keepOld: false it replaces it and keeps nothing', async (t) => {
    const dir = tmpDir(t);
    const out = path.join(dir, 'Data.fs');
    copy(statePath(6), out);
    fs.writeFileSync(out + '.index', 'old index');
    const r = await recover({ repository: FIXTURE_REPO_GZ, output: out, date: '2026-01-04-10-00-00', keepOld: false });
    assert.deepEqual(r.keptOld, []);
    assert.ok(fs.readFileSync(out).equals(fs.readFileSync(statePath(4))));
    assert.deepEqual(names(dir), ['Data.fs', 'Data.fs.index']);
  });

  it('an output folder that does not exist is an error and creates nothing', async (t) => {
    const dir = tmpDir(t);
    await rejectsWith(recover({ repository: FIXTURE_REPO, output: path.join(dir, 'a', 'Data.fs') }), 'IO');
    assert.deepEqual(names(dir), []);
  });

  it('an aborted restore leaves the old Data.fs and no temp files', async (t) => {
    const dir = tmpDir(t);
    const out = path.join(dir, 'Data.fs');
    copy(statePath(6), out);
    const before = snapshot(dir);
    const ac = new AbortController();
    ac.abort();
    await rejectsWith(recover({ repository: FIXTURE_REPO, output: out, date: '2026-01-03', signal: ac.signal }), 'ABORTED');
    assert.deepEqual(snapshot(dir), before);
  });
});

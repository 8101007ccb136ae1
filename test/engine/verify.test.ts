/**
 * repozo -V on the fixture repositories, and every kind of damaged
 * repository met by verify, recover and backup: each is a typed error (or a
 * typed problem in verify's report), and nothing on disk changes.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { backup, type ErrorCode, recover, verify } from '../../src/engine/internal';
import { rejectsWith } from '../support/assert';
import { at, history, replayHistory, statePath } from '../support/fixtures';
import { copy, flipByte, snapshot, tmpDir } from '../support/fs';
import { FIXTURE_REPO, FIXTURE_REPO_GZ } from '../support/paths';
import { nth } from '../support/must';

const NOW = at('2026-01-07-00-00-00');
const steps = history().steps;

describe('verify: the fixture repositories are fine', () => {
  for (const repo of [FIXTURE_REPO, FIXTURE_REPO_GZ]) {
    for (const quick of [false, true]) {
      it(`${path.basename(repo)}${quick ? ' (quick)' : ''}`, async () => {
        const before = snapshot(repo);
        const r = await verify({ repository: repo, quick, now: NOW });
        assert.equal(r.ok, true);
        assert.deepEqual(r.unregistered, []);
        assert.equal(path.basename(r.dat), '2026-01-05-10-00-00.dat');
        assert.deepEqual(
          r.pieces.map((p) => [p.name.slice(0, 19), p.expectedSize, p.size, p.problem]),
          [
            ['2026-01-05-10-00-00', 4416, 4416, undefined],
            ['2026-01-06-10-00-00', 1284, 1284, undefined],
          ],
        );
        if (!quick) assert.ok(r.pieces.every((p) => p.md5 === p.expectedMd5));
        // As of an earlier date: the first chain.
        const r1 = await verify({ repository: repo, quick, date: '2026-01-04-12' });
        assert.equal(r1.ok, true);
        assert.equal(r1.pieces.length, 4);
        assert.equal(nth(r1.pieces, 3).expectedSize, nth(steps, 3).size - nth(steps, 2).size);
        assert.deepEqual(snapshot(repo), before);
      });
    }
  }

  it('a repository without backups is NO_BACKUPS', async (t) => {
    await rejectsWith(verify({ repository: tmpDir(t), now: NOW }), 'NO_BACKUPS');
  });
});

/** A writable copy of a fixture repository, with a Data.fs (S6) beside it. */
function workspace(t: Parameters<typeof tmpDir>[0], gzip = false): { dir: string; repo: string; data: string; out: string } {
  const dir = tmpDir(t);
  const repo = copy(gzip ? FIXTURE_REPO_GZ : FIXTURE_REPO, path.join(dir, gzip ? 'repository-gzip' : 'repository'));
  const data = copy(statePath(6), path.join(dir, 'Data.fs'));
  const out = path.join(dir, 'restore');
  fs.mkdirSync(out);
  return { dir, repo, data, out };
}

interface Damage {
  name: string;
  gzip?: boolean;
  damage: (repo: string) => void;
  /** verify of the newest chain: throws this code, or reports one piece with this problem, or lists these unregistered pieces. */
  verifyThrows?: ErrorCode;
  verifyProblem?: ErrorCode;
  verifyUnregistered?: string[];
  /** Whether verify -Q (sizes only) notices. */
  quickNotices: boolean;
  /** What recover as of the damaged state throws, with -w and without. */
  recoverCode: ErrorCode | { withVerify: ErrorCode; plain: ErrorCode };
  /** What a (non-quick) backup does: a typed error, or the backup it makes when the damage does not concern it. */
  backup: ErrorCode | 'full' | 'incremental';
  /** Whether a quick backup (which reads only the .dat and Data.fs) notices too. */
  quickToo?: boolean;
}

const LAST = '2026-01-06-10-00-00';
const cases: Damage[] = [
  {
    name: 'a truncated piece',
    damage: (repo) => fs.truncateSync(path.join(repo, `${LAST}.deltafs`), 1000),
    verifyProblem: 'PIECE_MISMATCH',
    quickNotices: true,
    recoverCode: 'PIECE_MISMATCH',
    backup: 'full', // the chain no longer matches Data.fs
  },
  {
    name: 'a piece longer than its .dat says',
    damage: (repo) => fs.appendFileSync(path.join(repo, `${LAST}.deltafs`), 'more'),
    verifyProblem: 'PIECE_MISMATCH',
    quickNotices: true,
    recoverCode: 'PIECE_MISMATCH',
    backup: 'full',
  },
  {
    name: 'a piece with one flipped byte',
    damage: (repo) => flipByte(path.join(repo, '2026-01-05-10-00-00.fs'), 2000),
    verifyProblem: 'PIECE_MISMATCH',
    quickNotices: false,
    recoverCode: 'PIECE_MISMATCH',
    backup: 'full',
  },
  {
    name: 'a garbled .dat',
    damage: (repo) => fs.appendFileSync(path.join(repo, '2026-01-05-10-00-00.dat'), 'repository/2026-01-07-10-00-00.deltafs 5700\n'),
    verifyThrows: 'DAT_BAD',
    quickNotices: true,
    recoverCode: 'DAT_BAD',
    backup: 'DAT_BAD',
  },
  {
    name: 'a missing incremental',
    damage: (repo) => {
      fs.rmSync(path.join(repo, `${LAST}.deltafs`));
      fs.rmSync(path.join(repo, `${LAST}.index`));
    },
    verifyProblem: 'PIECE_MISSING',
    quickNotices: true,
    recoverCode: 'PIECE_MISSING',
    backup: 'full', // the .dat lists a piece that is gone: the chain cannot be continued
    quickToo: true,
  },
  {
    name: 'a missing full backup',
    // Then the newest chain runs from the first full backup into the last incremental.
    damage: (repo) => fs.rmSync(path.join(repo, '2026-01-05-10-00-00.fs')),
    verifyUnregistered: [`${LAST}.deltafs`],
    quickNotices: true,
    recoverCode: { withVerify: 'PIECE_MISMATCH', plain: 'CHAIN_BROKEN' },
    backup: 'full',
    quickToo: true,
  },
  {
    name: 'a bad gzip piece',
    gzip: true,
    damage: (repo) => fs.writeFileSync(path.join(repo, `${LAST}.deltafsz`), 'this is not gzip at all'),
    verifyProblem: 'PIECE_BAD',
    quickNotices: true,
    recoverCode: 'PIECE_BAD',
    backup: 'PIECE_BAD',
  },
  {
    name: 'a truncated gzip piece',
    gzip: true,
    damage: (repo) => fs.truncateSync(path.join(repo, '2026-01-05-10-00-00.fsz'), 600),
    verifyProblem: 'PIECE_BAD',
    quickNotices: true,
    recoverCode: 'PIECE_BAD',
    backup: 'PIECE_BAD',
  },
  {
    name: 'a gzip piece holding other bytes',
    gzip: true,
    damage: (repo) => fs.copyFileSync(path.join(FIXTURE_REPO_GZ, '2026-01-04-10-00-00.deltafsz'), path.join(repo, `${LAST}.deltafsz`)),
    verifyProblem: 'PIECE_MISMATCH',
    quickNotices: true,
    recoverCode: 'PIECE_MISMATCH',
    backup: 'full',
  },
];

describe('damaged repositories', () => {
  for (const c of cases) {
    describe(c.name, () => {
      it(`verify reports it (${c.verifyThrows ?? c.verifyProblem ?? 'unregistered'}) and changes nothing`, async (t) => {
        const w = workspace(t, c.gzip);
        c.damage(w.repo);
        const before = snapshot(w.dir);
        for (const quick of [false, true]) {
          if (c.verifyThrows) {
            await rejectsWith(verify({ repository: w.repo, quick, now: NOW }), c.verifyThrows);
          } else {
            const r = await verify({ repository: w.repo, quick, now: NOW });
            if (quick && !c.quickNotices) {
              assert.equal(r.ok, true, 'verify -Q checks sizes only');
            } else {
              assert.equal(r.ok, false);
              const bad = r.pieces.filter((p) => p.problem);
              if (c.verifyProblem) {
                assert.equal(bad.length, 1);
                assert.equal(nth(bad, 0).code, c.verifyProblem);
                assert.ok(nth(bad, 0).problem!.length > 10);
              } else assert.equal(bad.length, 0);
              assert.deepEqual(r.unregistered, c.verifyUnregistered ?? []);
            }
          }
          assert.deepEqual(snapshot(w.dir), before);
        }
      });

      it('recover (-w and not) throws; no output, the old output unchanged', async (t) => {
        const w = workspace(t, c.gzip);
        c.damage(w.repo);
        const fresh = path.join(w.out, 'Data.fs');
        const existing = path.join(w.dir, 'Data.fs');
        fs.writeFileSync(existing + '.index', 'old index');
        const before = snapshot(w.dir);
        for (const withVerify of [true, false]) {
          const code = typeof c.recoverCode === 'string' ? c.recoverCode : withVerify ? c.recoverCode.withVerify : c.recoverCode.plain;
          const e1 = await rejectsWith(recover({ repository: w.repo, output: fresh, date: '2026-01-06-12', withVerify }), code);
          assert.ok(e1.userMessage.length > 0);
          assert.ok(!fs.existsSync(fresh));
          await rejectsWith(recover({ repository: w.repo, output: existing, date: '2026-01-06-12', withVerify }), code);
          assert.deepEqual(snapshot(w.dir), before);
        }
        // The first chain is intact and still restores.
        await recover({ repository: w.repo, output: fresh, date: '2026-01-04-12', withVerify: true });
        assert.ok(fs.readFileSync(fresh).equals(fs.readFileSync(statePath(4))));
      });

      it(`backup: ${c.backup === 'full' || c.backup === 'incremental' ? `makes ${c.backup === 'full' ? 'a full' : 'an incremental'} backup that restores` : `throws ${c.backup} and changes nothing`}`, async (t) => {
        const w = workspace(t, c.gzip);
        c.damage(w.repo);
        const before = snapshot(w.dir);
        if (c.backup === 'full' || c.backup === 'incremental') {
          for (const quick of c.quickToo ? [false, true] : [false]) {
            const ws = quick ? workspace(t, c.gzip) : w;
            if (quick) c.damage(ws.repo);
            const repo = ws.repo;
            const r = await backup({ file: ws.data, repository: repo, gzip: c.gzip, quick, now: NOW, lockWaitMs: 0 });
            assert.equal(r.action, c.backup, r.reason);
            const out = path.join(ws.out, 'Data.fs');
            await recover({ repository: repo, output: out, withVerify: true, now: NOW, keepOld: false });
            assert.ok(fs.readFileSync(out).equals(fs.readFileSync(statePath(6))));
            assert.equal((await verify({ repository: repo, now: NOW })).ok, true, 'the newest chain is whole again');
          }
        } else {
          await rejectsWith(backup({ file: w.data, repository: w.repo, gzip: c.gzip, now: NOW, lockWaitMs: 0 }), c.backup);
          assert.deepEqual(snapshot(w.dir), before);
        }
      });
    });
  }

  describe('a garbled .dat of a lone full backup', () => {
    it('is DAT_BAD for backup, recover and verify; the backup is not deleted', async (t) => {
      const dir = tmpDir(t);
      const repo = path.join(dir, 'repo');
      fs.mkdirSync(repo);
      const data = copy(statePath(1), path.join(dir, 'Data.fs'));
      await backup({ file: data, repository: repo, now: at('2026-01-01-10-00-00') });
      fs.writeFileSync(path.join(repo, '2026-01-01-10-00-00.dat'), 'garbage\n');
      fs.copyFileSync(statePath(2), data);
      const before = snapshot(dir);
      for (const quick of [false, true]) {
        await rejectsWith(backup({ file: data, repository: repo, quick, now: at('2026-01-02-10-00-00'), lockWaitMs: 0 }), 'DAT_BAD');
        assert.deepEqual(snapshot(dir), before);
      }
      await rejectsWith(recover({ repository: repo, output: path.join(dir, 'out.fs'), now: NOW }), 'DAT_BAD');
      await rejectsWith(verify({ repository: repo, now: NOW }), 'DAT_BAD');
      assert.deepEqual(snapshot(dir), before);
    });
  });

  it('a .dat whose pieces do not follow each other is CHAIN_BROKEN', async (t) => {
    const w = workspace(t);
    const dat = path.join(w.repo, '2026-01-05-10-00-00.dat');
    fs.writeFileSync(dat, fs.readFileSync(dat, 'latin1').replace(' 4416 5700 ', ' 4400 5700 '));
    const before = snapshot(w.dir);
    const e = await rejectsWith(recover({ repository: w.repo, output: path.join(w.out, 'Data.fs'), now: NOW }), 'CHAIN_BROKEN');
    assert.equal(e.position, 4400);
    assert.deepEqual(snapshot(w.dir), before);
  });

  it('a piece the .dat does not list: verify says so, recover -w refuses', async (t) => {
    const w = workspace(t);
    const dat = path.join(w.repo, '2026-01-05-10-00-00.dat');
    fs.writeFileSync(dat, fs.readFileSync(dat, 'latin1').split('\n')[0] + '\n');
    const r = await verify({ repository: w.repo, now: NOW });
    assert.equal(r.ok, false);
    assert.deepEqual(r.unregistered, [`${LAST}.deltafs`]);
    const before = snapshot(w.dir);
    await rejectsWith(recover({ repository: w.repo, output: path.join(w.out, 'Data.fs'), now: NOW, withVerify: true }), 'PIECE_MISMATCH');
    assert.deepEqual(snapshot(w.dir), before);
    // Without -w, as repozo, it restores what the pieces hold.
    await recover({ repository: w.repo, output: path.join(w.out, 'Data.fs'), now: NOW });
    assert.ok(fs.readFileSync(path.join(w.out, 'Data.fs')).equals(fs.readFileSync(statePath(6))));
  });

  it("a killed run's unregistered piece: restored when whole (as repozo), CHAIN_BROKEN when cut short", async (t) => {
    const dir = tmpDir(t);
    const { repo, data } = await replayHistory(dir, { steps: 3 });
    const dat = path.join(repo, '2026-01-01-10-00-00.dat');
    const registered = fs.readFileSync(dat, 'latin1');
    fs.copyFileSync(statePath(4), data);
    await backup({ file: data, repository: repo, now: at('2026-01-04-10-00-00') });
    fs.writeFileSync(dat, registered); // killed before the .dat was replaced
    const out = path.join(dir, 'out.fs');
    const r = await recover({ repository: repo, output: out, now: NOW });
    assert.deepEqual(
      r.chain.map((p) => p.checked),
      [true, true, true, false],
    );
    assert.ok(fs.readFileSync(out).equals(fs.readFileSync(statePath(4))));
    await rejectsWith(recover({ repository: repo, output: out, now: NOW, withVerify: true }), 'PIECE_MISMATCH');
    // Cut short: the pieces no longer add up to what its .index says.
    fs.truncateSync(path.join(repo, '2026-01-04-10-00-00.deltafs'), 50);
    const before = snapshot(dir);
    const e = await rejectsWith(recover({ repository: repo, output: out, now: NOW }), 'CHAIN_BROKEN');
    assert.match(e.message, /7517/);
    assert.deepEqual(snapshot(dir), before);
    // The next backup removes it and continues the chain.
    const b = await backup({ file: data, repository: repo, now: at('2026-01-04-10-00-00') });
    assert.equal(b.action, 'incremental');
    assert.equal(b.stamp, '2026-01-04-10-00-00');
    assert.equal((await verify({ repository: repo, now: NOW })).ok, true);
  });

  it('a missing repository is REPO_MISSING everywhere', async (t) => {
    const dir = tmpDir(t);
    const repo = path.join(dir, 'nope');
    const data = copy(statePath(1), path.join(dir, 'Data.fs'));
    const before = snapshot(dir);
    await rejectsWith(backup({ file: data, repository: repo }), 'REPO_MISSING');
    await rejectsWith(recover({ repository: repo, output: path.join(dir, 'out.fs') }), 'REPO_MISSING');
    await rejectsWith(verify({ repository: repo }), 'REPO_MISSING');
    await rejectsWith(verify({ repository: data }), 'REPO_MISSING'); // a file, not a folder
    assert.deepEqual(snapshot(dir), before);
  });
});

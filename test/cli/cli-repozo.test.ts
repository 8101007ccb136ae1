/**
 * `plone-backup repozo`: repozo's option parsing (Python getopt rules), and
 * the built CLI (dist/cli.js) run as a child process the way cron runs it:
 * exit status 0 or 1, nothing on stdout but the data, one line on stderr
 * when it fails.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PloneBackupError, parseDat } from '../../src/engine/internal';
import { parseRepozoArgs } from '../../src/cli/repozo';
import { throwsWith } from '../support/assert';
import { statePath } from '../support/fixtures';
import { copy, flipByte, names, tmpDir } from '../support/fs';
import { FIXTURE_REPO, FIXTURE_REPO_GZ, ROOT } from '../support/paths';
import { nth } from '../support/must';

const CLI = path.join(ROOT, 'dist', 'cli.js');

describe('repozo options', () => {
  it('short options cluster, values glued or in the next word', () => {
    const o = parseRepozoArgs(['-BFz', '-r', 'backups', '-f', 'var/Data.fs']);
    assert.equal(o.mode, 'backup');
    assert.equal(o.full, true);
    assert.equal(o.gzip, true);
    assert.equal(o.repository, 'backups');
    assert.equal(o.file, 'var/Data.fs');
    const g = parseRepozoArgs(['-Bkrbackups', '-fData.fs', '-Qv']);
    assert.equal(g.repository, 'backups');
    assert.equal(g.file, 'Data.fs');
    assert.equal(g.killOld, true);
    assert.equal(g.quick, true);
    assert.equal(g.verbose, true);
    assert.equal(g.full, false);
  });

  it('long options with = or the next word, and unique prefixes', () => {
    const o = parseRepozoArgs(['--backup', '--repository=backups', '--file', 'Data.fs', '--gzip', '--kill-old-on-full']);
    assert.deepEqual([o.mode, o.repository, o.file, o.gzip, o.killOld], ['backup', 'backups', 'Data.fs', true, true]);
    const p = parseRepozoArgs(['--rec', '--repo', 'backups', '--out=x.fs', '--da', '2026-01-03', '--with']);
    assert.deepEqual([p.mode, p.repository, p.output, p.date, p.withVerify], ['recover', 'backups', 'x.fs', '2026-01-03', true]);
    assert.equal(parseRepozoArgs(['-B', '--repository=', '-f', 'x']).repository, '');
    assert.equal(parseRepozoArgs(['-R', '-r', 'b', '--lock-wait=2.5']).lockWaitMs, 2500);
    assert.equal(parseRepozoArgs(['-R', '-r', 'b', '--discard-old']).discardOld, true);
  });

  it('recover and verify options', () => {
    const r = parseRepozoArgs(['-R', '-r', 'b', '-D', '2026-01-03-10', '-o', 'out.fs', '-w']);
    assert.deepEqual([r.mode, r.date, r.output, r.withVerify], ['recover', '2026-01-03-10', 'out.fs', true]);
    const v = parseRepozoArgs(['-VQ', '-r', 'b']);
    assert.deepEqual([v.mode, v.quick], ['verify', true]);
  });

  it('options that do not apply to the mode are ignored with a note, as repozo does', () => {
    const o = parseRepozoArgs(['-B', '-r', 'b', '-f', 'x', '-D', '2026-01-01', '-o', 'out', '-w']);
    assert.equal(o.date, undefined);
    assert.equal(o.output, undefined);
    assert.equal(o.withVerify, false);
    assert.equal(o.notes.length, 3);
    assert.match(nth(o.notes, 0), /--date option is ignored in backup mode/);
    const v = parseRepozoArgs(['-V', '-r', 'b', '-F', '-z', '-f', 'x']);
    assert.deepEqual([v.full, v.gzip, v.file], [false, false, undefined]);
  });

  it('-h needs nothing else', () => {
    assert.equal(parseRepozoArgs(['-h']).help, true);
    assert.equal(parseRepozoArgs(['--help']).help, true);
    assert.equal(parseRepozoArgs(['-B', '-h']).help, true);
  });

  const usage: [string, string[], RegExp][] = [
    ['missing -r', ['-B', '-f', 'Data.fs'], /--repository is required/],
    ['missing mode', ['-r', 'b'], /--backup, --recover or --verify/],
    ['-B and -R', ['-B', '-R', '-r', 'b', '-f', 'x'], /mutually exclusive/],
    ['-B and -V', ['-BV', '-r', 'b', '-f', 'x'], /mutually exclusive/],
    ['-R and -V', ['--recover', '--verify', '-r', 'b'], /mutually exclusive/],
    ['-B without -f', ['-B', '-r', 'b'], /--file is required/],
    ['an unknown short option', ['-B', '-x', '-r', 'b', '-f', 'x'], /-x not recognized/],
    ['an unknown long option', ['-B', '--bogus', '-r', 'b', '-f', 'x'], /--bogus not recognized/],
    ['an ambiguous prefix', ['--ver', '-r', 'b'], /not a unique prefix/],
    ['a value given to a flag', ['-B', '--full=yes', '-r', 'b', '-f', 'x'], /must not have an argument/],
    ['a missing value', ['-B', '-f', 'x', '-r'], /-r requires argument/],
    ['a missing long value', ['-B', '-f', 'x', '--repository'], /requires argument/],
    ['a non-option argument', ['-B', '-r', 'b', '-f', 'x', 'extra'], /Invalid arguments: extra/],
    ['a non-option argument first', ['Data.fs', '-B', '-r', 'b', '-f', 'x'], /Invalid arguments/],
    ['arguments after --', ['-B', '-r', 'b', '-f', 'x', '--', '-F'], /Invalid arguments: -F/],
    ['a bad --lock-wait', ['-B', '-r', 'b', '-f', 'x', '--lock-wait=soon'], /--lock-wait/],
  ];
  for (const [name, argv, msg] of usage) {
    it(`USAGE: ${name}`, () => {
      const e = throwsWith(() => parseRepozoArgs(argv), 'USAGE');
      assert.match(e.message, msg);
      assert.ok(e instanceof PloneBackupError);
    });
  }
});

interface Run {
  status: number | null;
  stdout: Buffer;
  stderr: string;
}

function cli(args: string[], cwd: string): Run {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd, encoding: 'buffer', env: { ...process.env, PLONE_BACKUP_DEBUG: '' }, timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr.toString('utf8') };
}

/** Asserts a failed run: exit 1, nothing on stdout, one line on stderr matching `msg`. */
function assertFails(r: Run, msg: RegExp): void {
  assert.equal(r.status, 1, r.stderr);
  assert.equal(r.stdout.length, 0);
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line on stderr, got: ${r.stderr}`);
  assert.match(nth(lines, 0), /^plone-backup repozo: /);
  assert.match(nth(lines, 0), msg);
}

function assertOk(r: Run): void {
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '');
}

describe('the built CLI', () => {
  it('dist/cli.js exists (npm run pretest builds it)', () => {
    assert.ok(fs.existsSync(CLI), `${CLI} is missing: run npm run build`);
  });

  it('-h prints the usage and exits 0', (t) => {
    const r = cli(['repozo', '-h'], tmpDir(t));
    assert.equal(r.status, 0);
    assert.match(r.stdout.toString(), /^Usage: plone-backup repozo/);
    assert.match(r.stdout.toString(), /-B \/ --backup/);
  });

  it('-B, -B -z, -V, -R -o and -R to stdout, with a relative repository as repozo runs them', (t) => {
    const dir = tmpDir(t);
    copy(statePath(1), path.join(dir, 'Data.fs'));
    fs.mkdirSync(path.join(dir, 'repository'));
    fs.mkdirSync(path.join(dir, 'repository-gzip'));
    assertOk(cli(['repozo', '-B', '-f', 'Data.fs', '-r', 'repository'], dir));
    assertOk(cli(['repozo', '-Bz', '-f', 'Data.fs', '-r', 'repository-gzip'], dir));
    copy(statePath(2), path.join(dir, 'Data.fs'));
    assertOk(cli(['repozo', '--backup', '--file=Data.fs', '--repository=repository'], dir));
    assertOk(cli(['repozo', '-BQz', '-f', 'Data.fs', '-r', 'repository-gzip'], dir));

    for (const [repo, full, delta] of [
      ['repository', '.fs', '.deltafs'],
      ['repository-gzip', '.fsz', '.deltafsz'],
    ] as const) {
      const files = names(path.join(dir, repo));
      assert.equal(files.filter((n) => n.endsWith(full)).length, 1, files.join());
      assert.equal(files.filter((n) => n.endsWith(delta)).length, 1, files.join());
      assert.equal(files.filter((n) => n.endsWith('.index')).length, 2);
      const dat = files.find((n) => n.endsWith('.dat'))!;
      const lines = parseDat(fs.readFileSync(path.join(dir, repo, dat), 'latin1'));
      // The .dat names pieces as repozo does: the -r argument joined with the name.
      assert.ok(
        lines.every((l) => l.path.startsWith(`${repo}/`)),
        JSON.stringify(lines),
      );
      assert.deepEqual(
        lines.map((l) => [l.start, l.end]),
        [
          [0, 2906],
          [2906, 5502],
        ],
      );
      assertOk(cli(['repozo', '-V', '-r', repo], dir));
      assertOk(cli(['repozo', '-VQ', '-r', repo], dir));
      // To a file, with its index.
      const out = path.join(dir, `restored-${repo}.fs`);
      assertOk(cli(['repozo', '-R', '-r', repo, '-o', out], dir));
      assert.ok(fs.readFileSync(out).equals(fs.readFileSync(statePath(2))));
      assert.ok(fs.existsSync(out + '.index'));
      // To stdout: only the bytes.
      const r = cli(['repozo', '-R', '-r', repo], dir);
      assertOk(r);
      assert.ok(r.stdout.equals(fs.readFileSync(statePath(2))));
    }
    // Nothing changed: a third backup writes nothing and says nothing.
    const before = names(path.join(dir, 'repository'));
    assertOk(cli(['repozo', '-B', '-f', 'Data.fs', '-r', 'repository'], dir));
    assert.deepEqual(names(path.join(dir, 'repository')), before);
  });

  it('-R -D restores the state of a date from the fixture repositories', (t) => {
    const dir = tmpDir(t);
    for (const repo of [FIXTURE_REPO, FIXTURE_REPO_GZ]) {
      const out = path.join(dir, 'Data.fs');
      assertOk(cli(['repozo', '-R', '-w', '-r', repo, '-D', '2026-01-03', '-o', out, '--discard-old'], dir));
      assert.ok(fs.readFileSync(out).equals(fs.readFileSync(statePath(2))));
      assert.ok(fs.readFileSync(out + '.index').equals(fs.readFileSync(path.join(repo, '2026-01-02-10-00-00.index'))));
      const r = cli(['repozo', '-R', '-r', repo, '-D', '2026-01-04-10-00-00'], dir);
      assertOk(r);
      assert.ok(r.stdout.equals(fs.readFileSync(statePath(4))));
    }
    // Over an existing file: the old one is kept, and the CLI says where.
    const out = path.join(dir, 'Data.fs');
    const r = cli(['repozo', '-R', '-r', FIXTURE_REPO, '-D', '2026-01-02', '-o', out], dir);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /kept the previous file as .*Data\.fs\.before-restore-/);
    assert.ok(fs.readFileSync(out).equals(fs.readFileSync(statePath(1))));
    const kept = names(dir).filter((n) => n.startsWith('Data.fs.before-restore-') && !n.endsWith('.index'));
    assert.equal(kept.length, 1);
    assert.ok(fs.readFileSync(path.join(dir, nth(kept, 0))).equals(fs.readFileSync(statePath(2))));
  });

  it('-v logs what it does on stderr', (t) => {
    const dir = tmpDir(t);
    const r = cli(['repozo', '-Rv', '-r', FIXTURE_REPO, '-D', '2026-01-03', '-o', path.join(dir, 'Data.fs')], dir);
    assert.equal(r.status, 0);
    assert.match(r.stderr, /2026-01-02-10-00-00\.deltafs/);
  });

  it('failures exit 1 with one line on stderr', (t) => {
    const dir = tmpDir(t);
    fs.mkdirSync(path.join(dir, 'repo'));
    // A repository made now (so the real clock finds it), then damaged.
    fs.mkdirSync(path.join(dir, 'damaged'));
    copy(statePath(3), path.join(dir, 'Data.fs'));
    assertOk(cli(['repozo', '-B', '-r', 'damaged', '-f', 'Data.fs'], dir));
    const piece = names(path.join(dir, 'damaged')).find((n) => n.endsWith('.fs'))!;
    flipByte(path.join(dir, 'damaged', piece), 1000);
    fs.writeFileSync(path.join(dir, 'empty.fs'), '');
    const before = JSON.stringify(names(dir));
    assertFails(cli(['repozo', '-B', '-R', '-r', 'repo', '-f', 'x'], dir), /mutually exclusive/);
    assertFails(cli(['repozo', '-B', '-f', 'x'], dir), /--repository is required/);
    assertFails(cli(['repozo', '--bogus'], dir), /not recognized/);
    assertFails(cli(['repozo', '-B', '-r', 'repo', '-f', 'x', 'y'], dir), /Invalid arguments/);
    assertFails(cli(['repozo', '-B', '-r', 'nope', '-f', 'empty.fs'], dir), /does not exist/);
    assertFails(cli(['repozo', '-B', '-r', 'repo', '-f', 'missing.fs'], dir), /no database/i);
    assertFails(cli(['repozo', '-B', '-r', 'repo', '-f', 'empty.fs'], dir), /empty, not a ZODB FileStorage/);
    assertFails(cli(['repozo', '-R', '-r', 'repo', '-o', 'out.fs'], dir), /no backup/i);
    assertFails(cli(['repozo', '-R', '-r', FIXTURE_REPO, '-D', '2025-12-31', '-o', 'out.fs'], dir), /no backup/i);
    assertFails(cli(['repozo', '-R', '-r', FIXTURE_REPO, '-D', 'yesterday', '-o', 'out.fs'], dir), /not a date/);
    assertFails(cli(['repozo', '-V', '-r', 'damaged'], dir), /checksum/);
    assertFails(cli(['repozo', '-R', '-w', '-r', 'damaged', '-o', 'out.fs'], dir), /checksum/);
    assert.equal(JSON.stringify(names(dir)), before, 'no failure left a file behind');
    assert.deepEqual(names(path.join(dir, 'repo')), []);
    // A quick verify checks sizes only.
    assertOk(cli(['repozo', '-VQ', '-r', 'damaged'], dir));
  });
});

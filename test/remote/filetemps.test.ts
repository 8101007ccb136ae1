/**
 * A push to a file:// folder killed while it writes (the crash hook,
 * test/fault/crashhook.js, SIGKILLs the CLI right after a write in the
 * middle of a big blob file): the folder holds whole objects only, and the
 * dead push's temp file in its temp folder. The next push removes it (it
 * says so with --verbose) and completes; verify --deep finds the remote
 * whole; forget --dry-run lists another killed push's temp file and forget
 * removes it. A temp file of a live writer (this host, a live pid, written
 * just now) and a link with a temp file's name are left alone.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FILE_TEMPS } from '../../src/engine/internal';
import { runHooked } from '../support/crash';
import { tmpDir } from '../support/fs';
import { CLI } from '../support/paths';
import { backupPoint, production } from './s3support';

const BIG = (6 << 20) + 777;

describe('a push to a file:// folder killed while it writes', () => {
  it('leaves only a temp file, which the next push removes; forget removes another; a live writer’s and a link are left alone', async (t) => {
    const root = tmpDir(t);
    const prod = path.join(root, 'prod');
    const { s, dep, clock } = await production(t, prod);
    await s.site.uploadFile('big.pdf', randomBytes(BIG));
    await backupPoint(s, dep, 'backup', clock);
    await s.site.close();
    const cli = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { cwd: prod, encoding: 'utf8' });

    // Counted once: the writes to temp files, by file; the big blob's are several (1 MiB each).
    const counted = await runHooked(['push', '--to', `file://${path.join(root, 'counted')}`], { cwd: prod, count: true });
    assert.equal(counted.status, 0, counted.stderr);
    const writes = new Map<string, number[]>();
    for (const l of counted.ops ?? []) {
      const [n, what, p] = l.split(' ');
      if (what === 'write' && p?.includes(`/${FILE_TEMPS}/`)) writes.set(p, [...(writes.get(p) ?? []), Number(n)]);
    }
    const big = [...writes.values()].find((w) => w.length >= 4);
    assert.ok(big, `no temp file written in several steps: ${[...writes.values()].map((w) => w.length).join(', ')}`);

    /** A push killed after a write in the middle of the big file (blob files go 8 at a time: tried near there until one is). */
    const killedPush = async (folder: string): Promise<string[]> => {
      const temps = path.join(folder, FILE_TEMPS);
      for (const at of [big[1]!, big[2]!, big[0]!, big[1]! + 1, big[1]! - 1, big[2]! + 1]) {
        fs.rmSync(folder, { recursive: true, force: true });
        const killed = await runHooked(['push', '--to', `file://${folder}`], { cwd: prod, crashAt: at });
        assert.equal(killed.signal, 'SIGKILL', `not killed at step ${at}: ${killed.stderr}`);
        const left = fs.existsSync(temps) ? fs.readdirSync(temps) : [];
        if (left.length) return left;
      }
      assert.fail('no kill point left a temp file');
    };

    const remote = path.join(root, 'offsite');
    const url = `file://${remote}`;
    const left = await killedPush(remote);
    for (const n of left) assert.ok(fs.lstatSync(path.join(remote, FILE_TEMPS, n)).isFile());
    // Others' entries in the temp folder: a live writer's temp file (this host, this test's pid, written now) and a link.
    const hostTag = createHash('sha256').update(os.hostname()).digest('hex').slice(0, 8);
    const live = `${hostTag}.${process.pid}.0badc0de.put`;
    fs.writeFileSync(path.join(remote, FILE_TEMPS, live), 'being written');
    const link = `${hostTag}.999999.00000000.put`;
    fs.writeFileSync(path.join(root, 'outside'), 'not the remote’s');
    fs.symlinkSync(path.join(root, 'outside'), path.join(remote, FILE_TEMPS, link));

    // The next push: the dead push's temp files go, the push completes.
    const next = cli('push', '--to', url, '--verbose');
    assert.equal(next.status, 0, next.stderr);
    assert.match(next.stderr, new RegExp(`removed ${left.length} temp files? of killed pushes`));
    assert.deepEqual(fs.readdirSync(path.join(remote, FILE_TEMPS)).sort(), [link, live].sort());
    assert.ok(fs.existsSync(path.join(root, 'outside')), 'the link was followed');
    const verify = cli('verify', '--from', url, '--deep', '--json');
    assert.equal(verify.status, 0, verify.stdout + verify.stderr);
    assert.equal(JSON.parse(verify.stdout).ok, true);

    // forget: another killed push's temp file, listed by --dry-run, removed by forget.
    const other = path.join(root, 'offsite-2');
    const left2 = await killedPush(other);
    const dry = cli('forget', '--remote', `file://${other}`, '--keep', '0', '--dry-run');
    assert.equal(dry.status, 0, dry.stderr);
    for (const n of left2) assert.match(dry.stdout, new RegExp(`unfinished ${FILE_TEMPS}/${n.replace(/\./g, '\\.')}`));
    assert.deepEqual(fs.readdirSync(path.join(other, FILE_TEMPS)).sort(), [...left2].sort());
    const forget = cli('forget', '--remote', `file://${other}`, '--keep', '0', '--json');
    assert.equal(forget.status, 0, forget.stderr);
    assert.deepEqual(JSON.parse(forget.stdout).unfinished, left2.map((n) => `${FILE_TEMPS}/${n}`).sort());
    assert.deepEqual(fs.readdirSync(path.join(other, FILE_TEMPS)), []);
  });
});

/**
 * The standalone executable of `npm run dist` (Node's single-executable
 * application: node and the CLI bundle in one file) runs where there is no
 * Node: copied out of the repository into a folder of its own and run as
 * `env -i PATH=<that folder>` (holding it and flock, no node: checked), it
 * answers --version as the bundle does, backs up and restores a plone-backend
 * container's site byte for byte (its Data.fs large enough for the md5 worker
 * thread and several gzip members, evaluated inside the executable), starts
 * itself again for the demo's writer, and writes bin/backup scripts that call
 * it. Built by this test when dist/ has none newer than dist/cli.js, else reused.
 */
import { before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FileStorageWriter, FsIndex, openFileStorage, scanRecords, SPLIT_MIN, writeIndexFile } from '../../src/engine/internal';
import { containerRoot } from '../support/container';
import { blobContents, content, tmpDir, type TestHooks } from '../support/fs';
import { CLI, ROOT } from '../support/paths';
import { sampleSite } from '../support/site';

const EXE = path.join(ROOT, 'dist', `plone-backup-linux-${process.arch}`);
/** Past the size whose md5 is computed in a worker thread (8 MiB), and several 4 MB gzip members. */
const DATA_FS_BYTES = 10 << 20;

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** A folder holding the executable (a copy, as `plone-backup`) and flock: the whole PATH of the runs. */
function machine(t: TestHooks): string {
  const bin = path.join(tmpDir(t, 'pb-standalone-'), 'bin');
  fs.mkdirSync(bin);
  fs.copyFileSync(EXE, path.join(bin, 'plone-backup'));
  fs.chmodSync(path.join(bin, 'plone-backup'), 0o755);
  // The site lock is tried with flock where there is one (util-linux, in Debian's base).
  const flock = ['/usr/bin/flock', '/bin/flock'].find((f) => fs.existsSync(f));
  if (flock) fs.symlinkSync(flock, path.join(bin, 'flock'));
  return bin;
}

/** `env -i PATH=<bin> plone-backup ...args` in `cwd`: no environment but the PATH. */
function standalone(bin: string, args: string[], cwd: string): Run {
  const r = spawnSync('/usr/bin/env', ['-i', `PATH=${bin}`, 'plone-backup', ...args], { cwd, encoding: 'utf8', input: '', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A plone-backend container's site: /data/filestorage/Data.fs of DATA_FS_BYTES and more, blob files, not running. */
async function containerSite(t: TestHooks) {
  const c = containerRoot(t);
  const site = await sampleSite(t, { file: c.file, blobDir: c.blobDir });
  try {
    // Random text does not compress: the gzip pieces stay several members long.
    for (let i = 0; fs.statSync(c.file).size < DATA_FS_BYTES; i++) await site.addDocument(`document ${i}`, randomBytes(384 << 10).toString('base64'));
    for (let i = 0; i < 3; i++) await site.uploadFile(`file${i}.pdf`, randomBytes(5000 + i));
  } finally {
    await site.close();
  }
  return c;
}

describe('the standalone executable (npm run dist)', () => {
  before(() => {
    const fresh = fs.existsSync(EXE) && fs.statSync(EXE).mtimeMs >= fs.statSync(CLI).mtimeMs;
    if (fresh) return;
    const r = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'dist.mjs')], { cwd: ROOT, encoding: 'utf8', timeout: 300_000 });
    assert.equal(r.status, 0, `npm run dist failed: ${r.stdout}${r.stderr}`);
    assert.ok(fs.existsSync(EXE), `${EXE} was not built`);
  });

  it('runs on a PATH without node and answers --version as the bundle does', (t) => {
    const bin = machine(t);
    const which = spawnSync('/usr/bin/env', ['-i', `PATH=${bin}`, '/bin/sh', '-c', 'command -v node; command -v plone-backup'], { encoding: 'utf8' });
    assert.equal(which.stdout, `${path.join(bin, 'plone-backup')}\n`, 'the PATH of the runs has plone-backup and no node');
    const want = spawnSync(process.execPath, [CLI, '--version'], { encoding: 'utf8' }).stdout;
    assert.match(want, /^\d+\.\d+\.\d+\n$/);
    const r = standalone(bin, ['--version'], os.tmpdir());
    assert.deepEqual(r, { status: 0, stdout: want, stderr: '' });
  });

  it('backs up a plone-backend container from its root and restores it from the volume, byte for byte', async (t) => {
    const bin = machine(t);
    const c = await containerSite(t);
    const first = standalone(bin, ['backup', '-q', '--dir', c.root], os.tmpdir());
    assert.deepEqual([first.status, first.stderr, first.stdout], [0, '', ''], 'a quiet backup prints nothing');
    // More commits, then an incremental backup from the volume itself (a sidecar's view of it).
    const site = await sampleSite(t, { file: c.file, blobDir: c.blobDir, open: true });
    await site.addDocument('after the full backup', randomBytes(1 << 20).toString('base64'));
    await site.uploadFile('later.pdf', randomBytes(7000));
    await site.close();
    const second = standalone(bin, ['backup', '--json'], c.data);
    assert.equal(second.status, 0, second.stderr);
    assert.match(second.stdout, /"action": "incremental"/);
    const dataFs = fs.readFileSync(c.file);
    const blobs = blobContents(c.blobDir);
    assert.equal(Object.keys(blobs).length, 4);

    // The site is lost; the backups (on the volume) are all that is left.
    fs.rmSync(c.file);
    fs.rmSync(`${c.file}.index`, { force: true });
    fs.rmSync(c.blobDir, { recursive: true });
    const restore = standalone(bin, ['restore', '--yes'], c.data);
    assert.equal(restore.status, 0, restore.stdout + restore.stderr);
    assert.ok(fs.readFileSync(c.file).equals(dataFs), 'the restored Data.fs has the bytes backed up');
    assert.deepEqual(blobContents(c.blobDir), blobs);
    const verify = standalone(bin, ['verify'], c.root);
    assert.equal(verify.status, 0, verify.stdout + verify.stderr);
  });

  it('builds a lost index on two threads (its worker evaluated inside the executable), the same index as one thread', async (t) => {
    const bin = machine(t);
    const dir = tmpDir(t);
    const file = path.join(dir, 'Data.fs');
    const repo = path.join(dir, 'repo');
    fs.mkdirSync(repo);
    // Past SPLIT_MIN (64 MB): 700 transactions of 100 KB, objects written again in both halves.
    const w = await FileStorageWriter.create(file);
    for (let i = 0; i < 700; i++) await w.commit({ records: [{ oid: i % 300, data: content(`r${i}`, 100_000) }] });
    await w.close();
    assert.ok(fs.statSync(file).size > SPLIT_MIN);
    const full = standalone(bin, ['repozo', '-B', '-F', '-r', repo, '-f', file], dir);
    assert.equal(full.status, 0, full.stderr);
    // The piece's .index is lost, and Data.fs has none: the next backup rebuilds it from Data.fs.
    for (const n of fs.readdirSync(repo).filter((n) => n.endsWith('.index'))) fs.rmSync(path.join(repo, n));
    const w2 = await FileStorageWriter.open(file);
    await w2.commit({ records: [{ oid: 1, data: content('later', 500) }] });
    await w2.close();
    const inc = standalone(bin, ['repozo', '-B', '-v', '-r', repo, '-f', file], dir);
    assert.equal(inc.status, 0, inc.stderr);
    assert.match(inc.stderr, /rebuilding it from Data\.fs/);
    assert.match(inc.stderr, /indexed on two threads, the second from byte \d+/);
    // The new piece's .index against the one-thread scan of the same bytes.
    const st = await openFileStorage(file);
    const want = path.join(dir, 'want.index');
    try {
      const index = new FsIndex();
      const r = await scanRecords(st, 4, st.size, index.map);
      await writeIndexFile(want, index, r.end);
    } finally {
      await st.fh.close();
    }
    const got = fs.readdirSync(repo).filter((n) => n.endsWith('.index'));
    assert.equal(got.length, 1);
    assert.ok(fs.readFileSync(path.join(repo, got[0]!)).equals(fs.readFileSync(want)), 'the same .index bytes');
  });

  it('starts itself again: the demo (its writer is the executable) and the bin/backup scripts it writes', async (t) => {
    const bin = machine(t);
    const demo = standalone(bin, ['demo'], os.tmpdir());
    assert.equal(demo.status, 0, demo.stdout + demo.stderr);
    assert.match(demo.stdout, /Writer stopped: \d+ commits/);
    assert.match(demo.stdout, /^Done in /m);

    const c = containerRoot(t);
    const site = await sampleSite(t, { file: c.file, blobDir: c.blobDir });
    await site.addDocument('one');
    await site.close();
    const scripts = standalone(bin, ['scripts', '--dir', c.data], c.data);
    assert.equal(scripts.status, 0, scripts.stdout + scripts.stderr);
    const script = path.join(c.data, 'bin', 'backup');
    assert.ok(fs.readFileSync(script, 'utf8').includes(`exec '${path.join(bin, 'plone-backup')}' 'backup'`), 'bin/backup runs the executable, not node');
    const r = spawnSync('/usr/bin/env', ['-i', `PATH=${bin}`, script], { cwd: os.tmpdir(), encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.equal(fs.readdirSync(path.join(c.data, 'backups')).filter((n) => n.endsWith('.fsz')).length, 1);
  });
});

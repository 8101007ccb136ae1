/**
 * The encryption's framing and the retention's choice, without a server (a
 * file:// target in a temp folder): every size around the chunk boundaries
 * round-trips, and a chunk cut off, dropped, swapped or moved to another
 * object's name fails authentication; keys of another kind or another value
 * are refused; restic's per-period rules on crafted stamps.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CRYPT_CHUNK, EncryptedTarget, MARKER_KEY, RemoteLock, type RemoteTarget, hashBuffer, openTarget, selectKept } from '../../src/engine/internal';
import { spawnSync } from 'node:child_process';
import { ENGINE } from '../support/paths';
import { tmpDir } from '../support/fs';

const CHUNK = CRYPT_CHUNK;
const SEALED = (n: number) => 28 + n + 16 * Math.max(1, Math.ceil(n / CHUNK));

async function encryptedFolder(t: { after: (fn: () => unknown) => void }): Promise<{ dir: string; url: string; keyFile: string; target: RemoteTarget }> {
  const root = tmpDir(t);
  const keyFile = path.join(root, 'key');
  fs.writeFileSync(keyFile, randomBytes(32).toString('base64') + '\n', { mode: 0o600 });
  const dir = path.join(root, 'offsite');
  const url = `file://${dir}`;
  const target = await openTarget(url, { key: { keyFile, via: 'test key' }, create: true });
  return { dir, url, keyFile, target };
}

const refused = (code: string, re?: RegExp) => (e: Error & { code?: string }) => e.code === code && (!re || re.test(e.message));

describe('the encrypted objects', () => {
  it('round-trip every size around the chunk boundaries, as a buffer and as a stream, and say their plain size', async (t) => {
    const { dir, target } = await encryptedFolder(t);
    assert.ok(target instanceof EncryptedTarget);
    const sizes = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 17];
    for (const n of sizes) {
      const body = randomBytes(n);
      const key = `main/pieces/2026-01-01-00-00-${String(sizes.indexOf(n)).padStart(2, '0')}.fsz`;
      assert.equal(await target.put(key, body, hashBuffer(body)), 'written');
      assert.equal(fs.statSync(path.join(dir, ...key.split('/'))).size, SEALED(n));
      assert.deepEqual(await target.head(key), { size: n });
      assert.ok((await target.get(key, n))!.equals(body));
      const got: Buffer[] = [];
      for await (const c of await target.stream(key)) got.push(Buffer.from(c));
      assert.ok(Buffer.concat(got).equals(body), `${n} bytes through the stream`);
      // The stored bytes do not hold the plaintext.
      if (n >= 64) assert.equal(fs.readFileSync(path.join(dir, ...key.split('/'))).includes(body.subarray(0, 64)), false);
    }
    // A file sent as a stream (the upload of a big piece) reads back the same.
    const src = path.join(dir, '..', 'big');
    const big = randomBytes(5 * CHUNK + 3);
    fs.writeFileSync(src, big);
    assert.equal(await target.upload('main/pieces/2026-01-02-00-00-00.fsz', src, hashBuffer(big)), 'written');
    assert.ok((await target.get('main/pieces/2026-01-02-00-00-00.fsz', big.length))!.equals(big));
    // A source that changed between its hash and its upload never completes an object.
    await assert.rejects(target.upload('main/pieces/2026-01-03-00-00-00.fsz', src, hashBuffer(randomBytes(big.length))), refused('SOURCE_CHANGED'));
    assert.equal(await target.head('main/pieces/2026-01-03-00-00-00.fsz'), undefined);
  });

  it('refuses an object cut at a chunk boundary, a chunk dropped or swapped, a flipped byte, and an object under another name', async (t) => {
    const { dir, target } = await encryptedFolder(t);
    const body = randomBytes(3 * CHUNK + 100);
    const file = (k: string) => path.join(dir, ...k.split('/'));
    const put = async (k: string, b: Buffer) => target.put(k, b, hashBuffer(b));
    const readAll = async (k: string) => {
      const out: Buffer[] = [];
      for await (const c of await target.stream(k)) out.push(Buffer.from(c));
      return Buffer.concat(out);
    };
    await put('main/indexes/2026-01-01-00-00-00.index', body);
    const sealed = fs.readFileSync(file('main/indexes/2026-01-01-00-00-00.index'));
    const frame = CHUNK + 16;
    const variants: [string, Buffer][] = [
      ['cut after two whole chunks', sealed.subarray(0, 28 + 2 * frame)],
      ['the last chunk dropped', Buffer.concat([sealed.subarray(0, 28 + 2 * frame), sealed.subarray(28 + 3 * frame)])],
      [
        'two chunks swapped',
        Buffer.concat([sealed.subarray(0, 28), sealed.subarray(28 + frame, 28 + 2 * frame), sealed.subarray(28, 28 + frame), sealed.subarray(28 + 2 * frame)]),
      ],
      ['a flipped byte', Buffer.from(sealed.map((b, i) => (i === 28 + frame + 5 ? b ^ 1 : b)))],
      ['a flipped byte in the header', Buffer.from(sealed.map((b, i) => (i === 10 ? b ^ 1 : b)))],
    ];
    for (const [what, bytes] of variants) {
      fs.writeFileSync(file('main/indexes/2026-01-01-00-00-00.index'), bytes);
      await assert.rejects(readAll('main/indexes/2026-01-01-00-00-00.index'), refused('REMOTE_BAD', /does not decrypt/), what);
    }
    // Another object's bytes under this name: authentic, but not this object.
    await put('main/indexes/2026-01-02-00-00-00.index', body);
    fs.copyFileSync(file('main/indexes/2026-01-02-00-00-00.index'), file('main/indexes/2026-01-01-00-00-00.index'));
    await assert.rejects(readAll('main/indexes/2026-01-01-00-00-00.index'), refused('REMOTE_BAD'));
  });

  it('hides blob names; refuses no key, a wrong key, a passphrase for a key file, and a key for a plain folder', async (t) => {
    const { dir, url, keyFile, target } = await encryptedFolder(t);
    const oid = '00000000000000a1';
    const tid = '03e5d1c2b0a09f8e';
    await target.put(`main/blobs/${oid}/${tid}.blob`, Buffer.from('x'), hashBuffer(Buffer.from('x')));
    const stored = fs.readdirSync(path.join(dir, 'main', 'blobs'), { recursive: true }).map(String);
    assert.equal(
      stored.some((n) => n.includes(oid) || n.includes(tid)),
      false,
      stored.join(' '),
    );
    assert.match(stored.join(' '), /^[0-9a-f]{2} [0-9a-f]{2}\/[0-9a-f]{62}$/);
    // The marker: the only object in clear, without the key.
    const marker = JSON.parse(fs.readFileSync(path.join(dir, MARKER_KEY), 'utf8'));
    assert.equal(marker.kdf.name, 'keyfile');
    assert.equal(JSON.stringify(marker).includes(fs.readFileSync(keyFile, 'utf8').trim()), false);

    await assert.rejects(openTarget(url), refused('REMOTE_KEY', /is encrypted, and no key was given/));
    const other = path.join(dir, '..', 'other-key');
    fs.writeFileSync(other, randomBytes(32));
    await assert.rejects(openTarget(url, { key: { keyFile: other, via: 'other' } }), refused('REMOTE_KEY', /is not the one/));
    await assert.rejects(openTarget(url, { key: { passphrase: 'correct horse', via: 'PLONE_BACKUP_PASSPHRASE' } }), refused('REMOTE_KEY', /key file/));
    const short = path.join(dir, '..', 'short-key');
    fs.writeFileSync(short, 'abc\n');
    await assert.rejects(openTarget(url, { key: { keyFile: short, via: 'short' } }), refused('REMOTE_KEY', /at least 32/));
    // The same key again opens it (its trailing newline is no part of it).
    fs.writeFileSync(other, fs.readFileSync(keyFile, 'utf8').trim());
    assert.ok((await openTarget(url, { key: { keyFile: other, via: 'same' } })) instanceof EncryptedTarget);
    // A binary key is used whole, even when its last byte is a newline (one in 128 of `head -c 32
    // /dev/urandom`): not cut to 31 bytes and refused, and not a different key from the one made.
    const binary = path.join(dir, '..', 'binary-key');
    fs.writeFileSync(binary, Buffer.concat([randomBytes(30), Buffer.from([0x01, 0x0a])]));
    const binaryUrl = `file://${path.join(dir, '..', 'offsite-binary')}`;
    assert.ok((await openTarget(binaryUrl, { key: { keyFile: binary, via: 'binary' }, create: true })) instanceof EncryptedTarget);
    assert.ok((await openTarget(binaryUrl, { key: { keyFile: binary, via: 'binary' } })) instanceof EncryptedTarget);
    fs.writeFileSync(binary, fs.readFileSync(binary).subarray(0, 31));
    await assert.rejects(openTarget(binaryUrl, { key: { keyFile: binary, via: 'binary' } }), refused('REMOTE_KEY', /at least 32/));

    // A plain folder: a key to read it is refused; an encrypted push into it too once it holds anything.
    const plain = `file://${path.join(dir, '..', 'plain')}`;
    await assert.rejects(openTarget(plain, { key: { keyFile, via: 'k' } }), refused('REMOTE_KEY', /is not encrypted/));
    const p = await openTarget(plain);
    await p.put('main/pieces/2026-01-01-00-00-00.fsz', Buffer.from('plain'), hashBuffer(Buffer.from('plain')));
    await assert.rejects(openTarget(plain, { key: { keyFile, via: 'k' }, create: true }), refused('REMOTE_KEY', /already holds unencrypted objects/));
    assert.equal(fs.existsSync(path.join(dir, '..', 'plain', MARKER_KEY)), false);
  });

  it('derives the key from a passphrase through scrypt, recorded in the marker', async (t) => {
    const root = tmpDir(t);
    const url = `file://${path.join(root, 'offsite')}`;
    const target = await openTarget(url, { key: { passphrase: 'correct horse battery staple', via: 'PLONE_BACKUP_PASSPHRASE' }, create: true });
    await target.put('main/generations/2026-01-01-00-00-00.json', Buffer.from('{}'), hashBuffer(Buffer.from('{}')));
    const marker = JSON.parse(fs.readFileSync(path.join(root, 'offsite', MARKER_KEY), 'utf8'));
    assert.deepEqual([marker.kdf.name, marker.kdf.N, marker.kdf.r, marker.kdf.p], ['scrypt', 32768, 8, 1]);
    assert.equal(fs.readFileSync(path.join(root, 'offsite', MARKER_KEY), 'utf8').includes('horse'), false);
    const again = await openTarget(url, { key: { passphrase: 'correct horse battery staple', via: 'X' } });
    assert.equal((await again.get('main/generations/2026-01-01-00-00-00.json', 10))!.toString(), '{}');
    await assert.rejects(openTarget(url, { key: { passphrase: 'correct horse battery stapler', via: 'X' } }), refused('REMOTE_KEY', /is not the one/));
    // A hostile marker (scrypt asking for gigabytes) is refused before any derivation.
    const m = { ...marker, kdf: { ...marker.kdf, N: 1 << 24 } };
    fs.writeFileSync(path.join(root, 'offsite', MARKER_KEY), JSON.stringify(m));
    await assert.rejects(openTarget(url, { key: { passphrase: 'x', via: 'X' } }), refused('REMOTE_BAD', /scrypt parameters/));
  });
});

describe('a big object is sealed and opened as a stream', () => {
  it('pushes and reads back 256 MiB through the encryption in a child process that stays far below that much memory', (t) => {
    const root = tmpDir(t);
    const file = path.join(root, 'big.fsz');
    const fd = fs.openSync(file, 'w');
    const block = randomBytes(1 << 20);
    for (let i = 0; i < 256; i++) fs.writeSync(fd, block);
    fs.closeSync(fd);
    fs.writeFileSync(path.join(root, 'key'), randomBytes(32));
    const script = `
      const { openTarget, hashFile } = require(${JSON.stringify(ENGINE)});
      const { createHash } = require('node:crypto');
      (async () => {
        const t = await openTarget(${JSON.stringify(`file://${path.join(root, 'offsite')}`)}, { key: { keyFile: ${JSON.stringify(path.join(root, 'key'))}, via: 'k' }, create: true });
        const sums = await hashFile(${JSON.stringify(file)});
        await t.upload('main/pieces/2026-01-01-00-00-00.fsz', ${JSON.stringify(file)}, sums);
        const sha = createHash('sha256');
        let n = 0;
        for await (const c of await t.stream('main/pieces/2026-01-01-00-00-00.fsz')) { n += c.length; sha.update(c); }
        console.log(JSON.stringify({ n, same: sha.digest('hex') === sums.sha256, maxRssKiB: process.resourceUsage().maxRSS }));
      })().catch((e) => { console.error(e); process.exit(1); });`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.n, 256 << 20);
    assert.equal(out.same, true);
    const stored = fs.statSync(path.join(root, 'offsite', 'main', 'pieces', '2026-01-01-00-00-00.fsz')).size;
    assert.equal(stored, SEALED(256 << 20));
    assert.ok(out.maxRssKiB < 160 * 1024, `peak RSS ${Math.round(out.maxRssKiB / 1024)} MiB for a 256 MiB object`);
  });
});

describe('which generations a forget keeps', () => {
  // Each its own chain (a full backup), so only the rules decide.
  const stamps = ['2026-01-05-10-00-00', '2026-01-20-10-00-00', '2026-02-02-10-00-00', '2026-02-03-09-00-00', '2026-02-03-18-00-00', '2026-02-04-10-00-00'];
  const [A, B, C, D, E, F] = stamps;
  const own = new Map(stamps.map((s) => [s, s]));
  const kept = (p: Parameters<typeof selectKept>[1], gens = own) => [...selectKept(gens, p)].sort();

  it('keeps the newest generation of each of the last N days, ISO weeks and months that have one, as restic does', () => {
    assert.deepEqual(kept({ keepDaily: 2 }), [E, F]);
    assert.deepEqual(kept({ keepDaily: 3 }), [C, E, F]);
    // 2026-02-02..04 are one ISO week (6), 2026-01-20 week 4, 2026-01-05 week 2.
    assert.deepEqual(kept({ keepWeekly: 2 }), [B, F]);
    assert.deepEqual(kept({ keepWeekly: 9 }), [A, B, F]);
    assert.deepEqual(kept({ keepMonthly: 1 }), [F]);
    assert.deepEqual(kept({ keepMonthly: 2 }), [B, F]);
    assert.deepEqual(kept({ keepDaily: 2, keepMonthly: 2 }), [B, E, F]);
    // The newest always stays; a rule of 0 keeps nothing more.
    assert.deepEqual(kept({ keepDaily: 0 }), [F]);
    void D;
  });

  it('keeps the newest N chains whole, and everything with keep 0', () => {
    const chains = new Map([
      ['2026-01-01-00-00-00', '2026-01-01-00-00-00'],
      ['2026-01-02-00-00-00', '2026-01-01-00-00-00'],
      ['2026-01-03-00-00-00', '2026-01-03-00-00-00'],
      ['2026-01-04-00-00-00', '2026-01-03-00-00-00'],
      ['2026-01-05-00-00-00', '2026-01-05-00-00-00'],
    ]);
    assert.deepEqual(kept({ keep: 1 }, chains), ['2026-01-05-00-00-00']);
    assert.deepEqual(kept({ keep: 2 }, chains), ['2026-01-03-00-00-00', '2026-01-04-00-00-00', '2026-01-05-00-00-00']);
    assert.equal(kept({ keep: 0 }, chains).length, 5);
  });
});

describe('the lock between pushes and forgets (a folder as the remote)', () => {
  it("lets pushes run together; a forget steps back from a push and a push waits for a forget; LOCKED once the wait is over; a dead run's lock is ignored", async (t) => {
    const root = tmpDir(t);
    const locks = path.join(root, 'offsite', 'locks');
    const target = await openTarget(`file://${path.join(root, 'offsite')}`);
    const push = await RemoteLock.acquire(target, 'push');
    const other = await RemoteLock.acquire(target, 'push', { waitMs: 0 });
    await other.release();
    await assert.rejects(RemoteLock.acquire(target, 'forget', { waitMs: 0 }), refused('LOCKED', /A push is running/));
    assert.deepEqual(
      fs.readdirSync(locks).filter((n) => !n.startsWith('push-')),
      [],
      'the forget took its lock away',
    );
    // A forget waiting for the push gets the lock once the push is done.
    const waiting = RemoteLock.acquire(target, 'forget');
    await push.release();
    const forget = await waiting;
    await assert.rejects(RemoteLock.acquire(target, 'push', { waitMs: 0 }), refused('LOCKED', /A forget is running/));
    await forget.release();
    assert.deepEqual(fs.readdirSync(locks), []);
    // A push's lock put 31 minutes ago (its run died) holds nothing up.
    const dead = `push-${String(Date.now() - 31 * 60_000).padStart(13, '0')}-0123456789ab.json`;
    fs.writeFileSync(path.join(locks, dead), '{}');
    await (await RemoteLock.acquire(target, 'forget', { waitMs: 0 })).release();
    assert.deepEqual(fs.readdirSync(locks), [dead]);
  });
});

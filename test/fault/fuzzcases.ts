/**
 * The fuzz cases of fuzz.test.ts, run in a worker thread (so a hang in
 * synchronous parser code can be caught by a watchdog in the main thread).
 * Each group makes inputs from a seeded PRNG (random bytes, mutations of the
 * ZODB fixtures, hand-made hostile inputs), feeds them to one parser and
 * checks the outcome: success, or a PloneBackupError of the group's codes;
 * never another exception, never more than a time bound per input, never a
 * jump in memory (rss). Properties where there are some (a stamp round-trips,
 * a parsed blob path prints back the same, extraction never writes outside
 * its target).
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import * as zlib from 'node:zlib';
import { execFileSync } from 'node:child_process';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  PloneBackupError,
  backup,
  blobRelPath,
  committedEnd,
  checkDeployment,
  decodeIndex,
  discoverDeployment,
  encodeDataHeader,
  encodeTxnHeader,
  formatDatLine,
  encodeHeader,
  extractTar,
  formatStamp,
  isBlobPickle,
  isStamp,
  iterateTransactions,
  loadPickle,
  normalizeDateArg,
  parseBlobRelPath,
  parseDat,
  parseStamp,
  parseZConfig,
  recordClass,
  listDeployment,
  readIndexFile,
  recover,
  storagesOf,
} from '../../src/engine/internal';
import { Rng } from '../support/rng';
import { must, nth, xorByte } from '../support/must';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const FIX = path.join(ROOT, 'test', 'fixtures', 'zodb');

export interface GroupResult {
  group: string;
  inputs: number;
  outcomes: Record<string, number>;
  maxMs: number;
  maxRssMb: number;
  failures: string[];
}

type Case = (rng: Rng, i: number, scratch: string) => Promise<string> | string;

/** Runs `fn`: its outcome ('ok' or the error code), failing on any other exception or code. */
async function typed(codes: string[], what: () => string, fn: () => unknown): Promise<string> {
  try {
    await fn();
    return 'ok';
  } catch (e) {
    if (!PloneBackupError.is(e)) throw new Error(`${what()}: threw ${(e as Error)?.constructor?.name}: ${(e as Error)?.stack ?? e}`);
    if (!codes.includes(e.code)) throw new Error(`${what()}: unexpected ${e.code}: ${e.message}`);
    if (!e.message) throw new Error(`${what()}: an empty message`);
    return e.code;
  }
}

const hex = (b: Buffer) => (b.length > 64 ? `${b.subarray(0, 64).toString('hex')}...(${b.length} bytes)` : b.toString('hex'));

// ---------------------------------------------------------------------------
// Inputs

const fsFixtures = (): Buffer[] => {
  const files = [1, 2, 3, 4, 5, 6].map((n) => path.join(FIX, 'history', 'states', `S${n}.fs`));
  files.push(path.join(FIX, 'wide-oids', 'Data.fs'), path.join(FIX, 'lawn', 'Data.fs'));
  for (const n of fs.readdirSync(path.join(FIX, 'torn-tails'))) if (n.endsWith('.fs')) files.push(path.join(FIX, 'torn-tails', n));
  return files.map((f) => fs.readFileSync(f));
};

const indexFixtures = (): Buffer[] => {
  const out = [path.join(FIX, 'wide-oids', 'Data.fs.index'), path.join(FIX, 'lawn', 'Data.fs.index')];
  const repo = path.join(FIX, 'history', 'repository');
  for (const n of fs.readdirSync(repo)) if (n.endsWith('.index')) out.push(path.join(repo, n));
  return out.map((f) => fs.readFileSync(f));
};

/** Positions of the length fields of a FileStorage: tlen of each transaction, plen/prev/tloc of each record, trailers. */
function lengthFields(b: Buffer): number[] {
  const out: number[] = [];
  let p = 4;
  while (p + 23 <= b.length) {
    const tlen = Number(b.readBigUInt64BE(p + 8));
    if (p + tlen + 8 > b.length) break;
    out.push(p + 8, p + tlen);
    let r = p + 23 + b.readUInt16BE(p + 17) + b.readUInt16BE(p + 19) + b.readUInt16BE(p + 21);
    while (r + 42 <= p + tlen) {
      out.push(r + 16, r + 24, r + 34);
      const plen = Number(b.readBigUInt64BE(r + 34));
      if (plen === 0) out.push(r + 42);
      r += 42 + (plen || 8);
    }
    p += tlen + 8;
  }
  return out;
}

const HUGE = [2n ** 63n, 2n ** 64n - 1n, 2n ** 53n, 2n ** 53n + 1n, 2n ** 32n, 2n ** 31n, 0n, 1n, 22n, 41n];

// ---------------------------------------------------------------------------
// Groups

let fsInputs: Buffer[] | undefined;
let idxInputs: Buffer[] | undefined;

const FS_CODES = ['FS_CORRUPT', 'NOT_FILESTORAGE'];

async function scanFile(file: string): Promise<string> {
  const r = await committedEnd(file);
  let n = 0;
  let end = 4;
  for await (const t of iterateTransactions(file)) {
    n++;
    end = t.end;
  }
  assert.equal(n, r.txnCount, 'committedEnd and iterate disagree on the count');
  assert.equal(end, r.end, 'committedEnd and iterate disagree on the end');
  assert.ok(r.end <= r.size);
  return 'ok';
}

export const GROUPS: Record<string, { n: number; codes: string[]; run: Case }> = {
  'filestorage: random bytes': {
    n: 1500,
    codes: FS_CODES,
    run: async (rng, i, scratch) => {
      const magic = rng.pick(['FS30', 'FS21', '', 'FS3', 'XXXX']);
      const body = rng.bytes(rng.int(i % 10 === 0 ? 4000 : 200));
      const b = Buffer.concat([Buffer.from(magic, 'latin1'), body]);
      const f = path.join(scratch, 'r.fs');
      fs.writeFileSync(f, b);
      return typed(
        FS_CODES,
        () => `random ${hex(b)}`,
        () => scanFile(f),
      );
    },
  },
  'filestorage: mutated fixtures': {
    n: 2500,
    codes: FS_CODES,
    run: async (rng, i, scratch) => {
      fsInputs ??= fsFixtures();
      const src = rng.pick(fsInputs);
      const b = rng.mutate(src, 6);
      const f = path.join(scratch, 'm.fs');
      fs.writeFileSync(f, b);
      const out = await typed(
        FS_CODES,
        () => `mutation of a fixture ${hex(b)}`,
        () => scanFile(f),
      );
      if (i % 25 === 0) {
        // The backup of it: typed, and when it works, it recovers a committed prefix.
        const repo = path.join(scratch, `repo${i}`);
        fs.mkdirSync(repo);
        await typed(
          [...FS_CODES, 'SOURCE_CHANGED'],
          () => `backup of a mutated fixture ${hex(b)}`,
          async () => {
            const r = await backup({ file: f, repository: repo });
            const o = path.join(scratch, `out${i}.fs`);
            await recover({ repository: repo, output: o });
            assert.ok(fs.readFileSync(o).equals(b.subarray(0, r.end)), 'the backup is not the committed prefix');
          },
        );
        fs.rmSync(repo, { recursive: true, force: true });
      }
      return out;
    },
  },
  'filestorage: length fields of 2^63 and friends': {
    n: 0, // one input per (fixture, field, value): set below
    codes: FS_CODES,
    run: async () => 'ok',
  },
  'index: random, mutated and hostile pickles': {
    n: 4000,
    codes: ['INDEX_BAD'],
    run: (rng, i) => {
      idxInputs ??= indexFixtures();
      let b: Buffer;
      const k = i % 4;
      if (k === 0) b = rng.bytes(rng.int(300));
      else if (k === 1) b = rng.mutate(rng.pick(idxInputs), 6);
      else if (k === 2) {
        // protocol header, then a hostile opcode with a huge length
        const op = rng.pick([0x42, 0x54, 0x8e, 0x8b, 0x8a, 0x43, 0x55, 0x95, 0x72]);
        const len = Buffer.alloc(8);
        len.writeBigUInt64LE(rng.pick(HUGE));
        b = Buffer.concat([Buffer.from([0x80, 0x03]), rng.pick([Buffer.alloc(0), Buffer.from([0x4b, 0x64, 0x2e, 0x80, 0x03])]), Buffer.from([op]), len, rng.bytes(rng.int(20))]);
      } else {
        // deep nesting and long tuples
        const depth = rng.int(20000);
        b = Buffer.concat([Buffer.from([0x80, 0x03]), Buffer.alloc(depth, rng.pick([0x28, 0x4e, 0x86, 0x74])), Buffer.from([0x2e])]);
      }
      return typed(
        ['INDEX_BAD'],
        () => `index ${hex(b)}`,
        () => {
          const r = decodeIndex(b, 'fuzz.index');
          assert.ok(Number.isSafeInteger(r.pos) && r.pos >= 4);
          // and the pickle loader on its own, anywhere in the buffer
          if (b.length) loadPickle(b, rng.int(b.length), 'fuzz');
        },
      );
    },
  },
  'record class pickles (blob detection)': {
    n: 3000,
    codes: [],
    run: (rng) => {
      const base = rng.pick([
        Buffer.from('\x80\x03cZODB.blob\nBlob\nq\x00.', 'latin1'),
        Buffer.from('\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\tZODB.blob\x94\x8c\x04Blob\x94\x93.', 'latin1'),
      ]);
      const b = rng.int(3) ? rng.mutate(base, 4) : rng.bytes(rng.int(600));
      recordClass(b);
      isBlobPickle(b);
      return 'ok';
    },
  },
  '.dat lines': {
    n: 4000,
    codes: ['DAT_BAD'],
    run: (rng, i) => {
      const good = 'repository/2026-01-01-10-00-00.fs 0 2906 4d0dda6172f6c36161b10b06a005f910\nrepository/2026-01-02-10-00-00.deltafs 2906 5502 dbcc76822efef1e73e160009533a21f6\n';
      const t = i % 3 === 0 ? rng.bytes(rng.int(200)).toString('latin1') : rng.mutate(Buffer.from(good, 'latin1'), 4).toString('latin1');
      return typed(
        ['DAT_BAD'],
        () => `dat ${JSON.stringify(t)}`,
        () => {
          for (const l of parseDat(t, 'fuzz.dat')) {
            assert.ok(Number.isSafeInteger(l.start) && Number.isSafeInteger(l.end) && l.end >= l.start);
            assert.match(l.md5, /^[0-9a-f]{32}$/);
          }
        },
      );
    },
  },
  'stamps and dates': {
    n: 6000,
    codes: ['DATE_BAD'],
    run: (rng, i) => {
      // A valid date round-trips.
      const d = new Date(Date.UTC(1970 + rng.int(200), rng.int(12), 1 + rng.int(28), rng.int(24), rng.int(60), rng.int(60)));
      const stamp = formatStamp(d);
      assert.ok(isStamp(stamp));
      assert.equal(parseStamp(stamp).getTime(), d.getTime());
      assert.equal(normalizeDateArg(stamp), stamp);
      assert.equal(normalizeDateArg(d.toISOString().slice(0, 19)), stamp);
      const s = i % 2 ? rng.mutate(Buffer.from(stamp), 3).toString('latin1') : rng.bytes(rng.int(30)).toString('latin1');
      return typed(
        ['DATE_BAD'],
        () => `date ${JSON.stringify(s)}`,
        () => {
          const n = normalizeDateArg(s);
          assert.match(n, /^\d{4}-\d\d-\d\d(-\d\d){0,3}$/);
          if (isStamp(s)) assert.equal(formatStamp(parseStamp(s)), s);
          parseStamp(s);
        },
      );
    },
  },
  'zope.conf': {
    n: 3000,
    codes: ['USAGE'],
    run: (rng, i) => {
      const good = `%define CLIENTHOME /srv/var\n<zodb_db main>\n  <blobstorage>\n    blob-dir $CLIENTHOME/blobstorage\n    <filestorage>\n      path \${CLIENTHOME}/filestorage/Data.fs\n    </filestorage>\n  </blobstorage>\n  mount-point /\n</zodb_db>\n<zodb_db catalog>\n  <filestorage>\n    path $CLIENTHOME/filestorage/catalog.fs\n  </filestorage>\n</zodb_db>\n`;
      const t = i % 4 === 0 ? rng.bytes(rng.int(300)).toString('latin1') : rng.mutate(Buffer.from(good), 5).toString('latin1');
      return typed(
        ['USAGE'],
        () => `zope.conf ${JSON.stringify(t)}`,
        () => {
          const r = parseZConfig(t, 'fuzz.conf');
          for (const s of storagesOf(r)) assert.equal(typeof s.path, 'string');
        },
      );
    },
  },
  'buildout.cfg': {
    n: 600,
    codes: ['CONFIG_BAD', 'TOO_LARGE', 'USAGE', 'NOT_FOUND', 'SOURCE_MISSING'],
    run: async (rng, i, scratch) => {
      const dir = path.join(scratch, `bo${i}`);
      fs.mkdirSync(dir);
      const good = `[buildout]\nextends = base.cfg\nparts =\n    instance\n    backup\nvar = \${buildout:directory}/var\n\n[instance]\nrecipe = plone.recipe.zope2instance\nvar = \${buildout:var}\n\n[backup]\nrecipe = collective.recipe.backup\nlocation = \${buildout:var}/fs\nkeep += 3\narchive_blob = true\nincremental_blobs = true\npre_command = echo \${:keep}\n`;
      fs.writeFileSync(path.join(dir, 'base.cfg'), '[backup]\nkeep = 2\n');
      const text = i % 4 === 0 ? rng.bytes(rng.int(300)).toString('latin1') : rng.mutate(Buffer.from(good), 5).toString('latin1');
      fs.writeFileSync(path.join(dir, 'buildout.cfg'), text);
      const out = await typed(
        ['CONFIG_BAD', 'TOO_LARGE', 'USAGE', 'NOT_FOUND', 'SOURCE_MISSING'],
        () => `buildout.cfg ${JSON.stringify(text.slice(0, 300))}`,
        async () => {
          const dep = await discoverDeployment(dir);
          for (const st of dep.storages) {
            assert.ok(path.isAbsolute(st.file));
            for (const d of Object.values(st.dirs)) assert.ok(path.isAbsolute(d));
          }
          assert.ok(Number.isInteger(dep.settings.keep) && dep.settings.keep >= 0);
        },
      );
      fs.rmSync(dir, { recursive: true, force: true });
      return out;
    },
  },
  'plone-backup.json': {
    n: 600,
    codes: ['USAGE', 'SOURCE_MISSING', 'CONFIG_BAD'],
    run: async (rng, i, scratch) => {
      const dir = path.join(scratch, `dep${i}`);
      fs.mkdirSync(dir);
      const good = JSON.stringify({
        var: 'var',
        keep: 3,
        gzip: false,
        storages: [
          { name: 'main', blobDir: 'var/blobstorage' },
          { name: 'catalog', file: 'var/filestorage/catalog.fs' },
        ],
      });
      const weird = [
        '[]',
        'null',
        '1',
        '"x"',
        '{"keep": 0}',
        '{"keep": 1.5}',
        '{"keep": "2"}',
        '{"keep": 1e400}',
        '{"storages": {}}',
        '{"storages": []}',
        '{"storages": [1]}',
        '{"storages": [null]}',
        '{"storages": [{"name": "../x"}]}',
        '{"storages": [{"name": ""}]}',
        '{"var": 5}',
        '{"var": null}',
        '{"storages": [{"file": 7}]}',
        '{"storages": [{"blobDir": ["a"]}]}',
        '{"gzip": "yes"}',
        '{"__proto__": {"keep": 0}}',
        `{"var": "${'a/'.repeat(3000)}"}`,
        '{"storages": [{"name": "a", "backups": {}}]}',
      ];
      const k = i % 3;
      const text = k === 0 ? rng.pick(weird) : k === 1 ? rng.mutate(Buffer.from(good), 4).toString('latin1') : rng.bytes(rng.int(100)).toString('latin1');
      fs.writeFileSync(path.join(dir, 'plone-backup.json'), text);
      const out = await typed(
        ['USAGE', 'SOURCE_MISSING', 'CONFIG_BAD'],
        () => `plone-backup.json ${JSON.stringify(text.slice(0, 300))}`,
        async () => {
          const dep = await discoverDeployment(dir);
          assert.ok(dep.storages.length > 0);
          for (const s of dep.storages) {
            assert.ok(path.isAbsolute(s.file), `a relative file ${s.file}`);
            assert.match(s.name, /^[A-Za-z0-9_.-]+$/);
            for (const d of Object.values(s.dirs)) assert.ok(path.isAbsolute(d));
          }
          // 0 keeps everything.
          assert.ok(Number.isInteger(dep.settings.keep) && dep.settings.keep >= 0);
        },
      );
      fs.rmSync(dir, { recursive: true, force: true });
      return out;
    },
  },
  'blob paths': {
    n: 6000,
    codes: [],
    run: (rng, i) => {
      const oid = rng.bytes(8);
      const tid = rng.bytes(8);
      if (rng.int(2)) oid.fill(0, 0, 6);
      const layout = rng.pick(['bushy', 'lawn'] as const);
      const good = blobRelPath(oid, tid, layout);
      // A blob path parses back to its ids.
      const back = parseBlobRelPath(good, layout);
      assert.ok(back && back.oid.equals(oid) && back.tid.equals(tid), `${good} does not parse back`);
      const s =
        i % 3 === 0
          ? rng.pick([
              '../x.blob',
              '/etc/x.blob',
              '0x00/../../0x01.blob',
              '..\\0x01.blob',
              '',
              '.blob',
              '0x/0x.blob',
              '0x0001/0x03.blob',
              '0x01/0x0003.blob',
              '0x00/0x00/0x00/0x00/0x00/0x00/0x00/0x01/0x0003.blob',
              '0x01/0x00000000000000000003.blob',
              '0x01/0xAB.blob',
            ])
          : rng.mutate(Buffer.from(good), 3).toString('latin1');
      const r = parseBlobRelPath(s, layout);
      if (r) {
        assert.ok(!s.split(/[\\/]/).includes('..') && !path.isAbsolute(s), `${JSON.stringify(s)} parsed as a blob path`);
        assert.equal(blobRelPath(r.oid, r.tid, layout), s.replace(/\\/g, '/'), `${JSON.stringify(s)} is not the canonical name of the blob it parses to`);
      }
      return r ? 'parsed' : 'rejected';
    },
  },
  'tar archives': {
    n: 0, // hostile archives (set below) plus mutations
    codes: ['ARCHIVE_BAD'],
    run: async () => 'ok',
  },
  'repository pieces': {
    n: 300,
    codes: ['PIECE_BAD', 'PIECE_MISMATCH', 'PIECE_MISSING', 'CHAIN_BROKEN', 'DAT_BAD', 'NO_BACKUPS'],
    run: async (rng, i, scratch) => {
      const repo = path.join(scratch, `r${i}`);
      fs.cpSync(path.join(FIX, 'history', rng.pick(['repository', 'repository-gzip'])), repo, { recursive: true });
      const names = fs.readdirSync(repo).filter((n) => !n.endsWith('.index'));
      const victim = rng.pick(names);
      const p = path.join(repo, victim);
      fs.chmodSync(p, 0o644);
      fs.writeFileSync(p, rng.int(4) ? rng.mutate(fs.readFileSync(p), 3) : rng.bytes(rng.int(100)));
      const codes = must(GROUPS['repository pieces'], "GROUPS['repository pieces']").codes;
      const out = await typed(
        codes,
        () => `repository with ${victim} damaged`,
        () => recover({ repository: repo, output: path.join(scratch, `o${i}.fs`), withVerify: true }),
      );
      fs.rmSync(repo, { recursive: true, force: true });
      return out;
    },
  },
};

// ---------------------------------------------------------------------------
// Deterministic hostile inputs

/** Every length field of every fixture set to each of HUGE. */
function lengthCases(): { name: string; data: Buffer }[] {
  const out: { name: string; data: Buffer }[] = [];
  fsInputs ??= fsFixtures();
  for (const [k, src] of fsInputs.slice(0, 8).entries()) {
    const fields = lengthFields(src);
    for (const at of fields.slice(0, 40)) {
      for (const v of HUGE) {
        const b = Buffer.from(src);
        b.writeBigUInt64BE(v, at);
        out.push({ name: `fixture ${k} field @${at} = ${v}`, data: b });
      }
    }
  }
  return out;
}

function tarBlock(name: string, type: string, size: number | bigint, opts: { prefix?: string; linkname?: string } = {}): Buffer {
  const h = encodeHeader({ name: 'placeholder', mode: 0o644, size: 0, mtime: 0, type });
  const b = h.subarray(h.length - 512);
  b.fill(0, 0, 100);
  b.write(name.slice(0, 100), 0, 'utf8');
  if (opts.linkname) b.write(opts.linkname, 157, 100, 'utf8');
  if (opts.prefix !== undefined) {
    b.fill(0, 345, 500);
    b.write(opts.prefix, 345, 155, 'utf8');
  }
  b.fill(0, 124, 136);
  if (typeof size === 'bigint') {
    b[124] = 0x80;
    let x = size;
    for (let i = 11; i > 0; i--) {
      b[124 + i] = Number(x & 0xffn);
      x >>= 8n;
    }
  } else b.write(size.toString(8).padStart(11, '0'), 124, 11, 'latin1');
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += nth(b, i);
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'latin1');
  return b;
}

const pad = (n: number) => Buffer.alloc((512 - (n % 512)) % 512);
const entry = (name: string, body: Buffer, type = '0', opts = {}) => Buffer.concat([tarBlock(name, type, body.length, opts), body, pad(body.length)]);
const END = Buffer.alloc(1024);

function tarCases(): { name: string; data: Buffer; gzip?: boolean }[] {
  const x = Buffer.from('pwned\n');
  const ok = entry('blobstorage/0x00/0x01.blob', Buffer.from('fine'));
  const pax = (k: string, v: string) => {
    const body = Buffer.from(`${String(` ${k}=${v}\n`.length + 3).padStart(2, '0')} ${k}=${v}\n`);
    return entry('PaxHeader', body, 'x');
  };
  const cases: { name: string; data: Buffer; gzip?: boolean }[] = [
    { name: '../x', data: Buffer.concat([ok, entry('blobstorage/../x', x), END]) },
    { name: '../../x', data: Buffer.concat([entry('blobstorage/../../x', x), END]) },
    { name: '/etc/x', data: Buffer.concat([entry('/etc/x', x), END]) },
    { name: 'a/../../x', data: Buffer.concat([entry('a/../../x', x), END]) },
    { name: 'prefix ../..', data: Buffer.concat([entry('x', x, '0', { prefix: '../..' }), END]) },
    { name: 'prefix /etc', data: Buffer.concat([entry('x', x, '0', { prefix: '/etc' }), END]) },
    { name: 'backslashes', data: Buffer.concat([entry('blobstorage\\..\\..\\x', x), END]) },
    { name: 'drive letter', data: Buffer.concat([entry('C:/x', x), END]) },
    { name: 'symlink member', data: Buffer.concat([tarBlock('blobstorage/link', '2', 0, { linkname: '/etc' }), entry('blobstorage/link/x', x), END]) },
    { name: 'hard link member', data: Buffer.concat([tarBlock('blobstorage/h', '1', 0, { linkname: '/etc/passwd' }), END]) },
    { name: 'device member', data: Buffer.concat([tarBlock('blobstorage/dev', '3', 0), END]) },
    { name: 'fifo member', data: Buffer.concat([tarBlock('blobstorage/fifo', '6', 0), END]) },
    { name: 'GNU long name ../x', data: Buffer.concat([entry('././@LongLink', Buffer.from('blobstorage/../../x\0'), 'L'), entry('short', x), END]) },
    { name: 'pax path ../x', data: Buffer.concat([pax('path', '../../x'), entry('short', x), END]) },
    { name: 'pax path /etc/x', data: Buffer.concat([pax('path', '/etc/x'), entry('short', x), END]) },
    { name: 'NUL in a name', data: Buffer.concat([entry('blobstorage/a\0/../../x', x), END]) },
    { name: 'size 2^63 (base-256)', data: Buffer.concat([tarBlock('blobstorage/big', '0', 2n ** 63n), x, END]) },
    { name: 'size 2^53 (base-256)', data: Buffer.concat([tarBlock('blobstorage/big', '0', 2n ** 53n), x, END]) },
    { name: 'size 8 GiB - 1 (octal)', data: Buffer.concat([tarBlock('blobstorage/big', '0', 0o77777777777), x, END]) },
    { name: 'size past the end', data: Buffer.concat([tarBlock('blobstorage/big', '0', 1 << 30), x]) },
    { name: 'oversized pax header', data: Buffer.concat([tarBlock('PaxHeader', 'x', 2n ** 62n), END]) },
    { name: 'oversized long name', data: Buffer.concat([tarBlock('././@LongLink', 'L', 1 << 28), END]) },
    {
      name: 'bad checksum',
      data: (() => {
        const b = Buffer.concat([entry('blobstorage/a.blob', x), END]);
        xorByte(b, 0, 1);
        return b;
      })(),
    },
    { name: 'a header cut short', data: entry('blobstorage/a.blob', x).subarray(0, 300) },
    { name: 'a body cut short', data: entry('blobstorage/a.blob', Buffer.alloc(5000, 1)).subarray(0, 1500) },
    { name: 'an existing file twice', data: Buffer.concat([entry('blobstorage/a.blob', x), entry('blobstorage/a.blob', x), END]) },
    { name: 'random bytes', data: Buffer.alloc(2048, 0x41) },
    { name: 'not gzip', data: Buffer.alloc(100, 7), gzip: true },
    { name: 'gzip of ../x', data: zlib.gzipSync(Buffer.concat([entry('../x', x), END])), gzip: true },
    { name: 'truncated gzip', data: zlib.gzipSync(Buffer.concat([ok, entry('b/c.blob', Buffer.alloc(20000, 3)), END])).subarray(0, 200), gzip: true },
  ];
  return cases;
}

/** Files anywhere under `root` except under `inside`. */
function filesOutside(root: string, inside: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (p === inside) continue;
      if (e.isDirectory()) walk(p);
      else out.push(p);
    }
  };
  walk(root);
  return out.sort();
}

async function extractCase(data: Buffer, gzip: boolean, scratch: string, i: number, what: string): Promise<string> {
  const box = path.join(scratch, `box${i}`);
  const dest = path.join(box, 'a', 'b', 'dest');
  fs.mkdirSync(dest, { recursive: true });
  const archive = path.join(box, 'a', 'archive.tar');
  fs.writeFileSync(archive, data);
  const before = filesOutside(box, dest);
  const out = await typed(
    ['ARCHIVE_BAD'],
    () => `tar ${what}`,
    () => extractTar(archive, dest, { gzip, prefix: 'blobstorage' }),
  );
  assert.deepEqual(filesOutside(box, dest), before, `tar ${what}: something was written outside the target`);
  for (const p of ['/etc/x', '/tmp/x', path.join(os.tmpdir(), 'x')]) assert.ok(!fs.existsSync(p) || fs.readFileSync(p, 'utf8') !== 'pwned\n', `tar ${what}: wrote ${p}`);
  fs.rmSync(box, { recursive: true, force: true });
  return out;
}

// ---------------------------------------------------------------------------
// Hostile shapes, one per child process
//
// Small files that used to cost a lot: a .fsz claiming a huge transaction, a
// gzip bomb, a wide-tuple index, FIFOs and /dev/zero links where metadata
// files belong, %define chains and %include fan-outs, and blob generation
// manifests. Each runs alone in a child process (fuzz.test.ts) that reports
// its own peak RSS and CPU time, so the ceilings are measured on the process,
// not guessed from a heap that another input shares; a hang is a child the
// parent kills.

export interface ShapeReport {
  shape: string;
  outcome: string;
  maxRssMb: number;
  /**
   * Peak of the memory held by Buffers, sampled every 5 ms: a huge
   * Buffer.allocUnsafe is not resident until written, so RSS alone misses an
   * allocation sized by a length field until the day the bytes arrive.
   */
  maxBuffersMb: number;
  cpuMs: number;
  wallMs: number;
}

const STAMP = '2026-01-01-10-00-00';
const SHAPE_TID = Buffer.from('03e5a1b2c3d4e5f6', 'hex');

/** A transaction header at `tpos` claiming `tlen`, with one record of a `plen`-byte pickle (its body not included). */
function shapeTxnHead(tpos: number, tlen: number, plen: number): Buffer {
  const h = encodeTxnHeader({ tid: SHAPE_TID, tlen, status: ' ', ulen: 4, dlen: 0, elen: 0 });
  const d = encodeDataHeader({ oid: Buffer.alloc(8, 1), tid: SHAPE_TID, prev: 0, tloc: tpos, vlen: 0, plen });
  return Buffer.concat([h, Buffer.from('anon'), d]);
}

/** Writes `parts` gzip-compressed, streaming; a number is that many zero bytes. */
async function gzipTo(file: string, parts: (Buffer | number)[]): Promise<void> {
  async function* gen() {
    for (const p of parts) {
      if (Buffer.isBuffer(p)) yield p;
      else for (let left = p; left > 0; left -= 1 << 20) yield Buffer.alloc(Math.min(left, 1 << 20));
    }
  }
  await pipeline(Readable.from(gen()), zlib.createGzip({ level: 9 }), fs.createWriteStream(file));
}

/**
 * A buildout-style deployment in `root` (var/filestorage/Data.fs, var/blobstorage,
 * var/backups from the gzip fixture repository, and one blob generation per
 * piece), that `list` and `check` read as the extension does on open.
 */
function shapeDeployment(root: string, opts: { repo?: boolean } = {}): { backups: string; blobBackups: string; stamps: string[] } {
  const v = path.join(root, 'var');
  fs.mkdirSync(path.join(v, 'filestorage'), { recursive: true });
  fs.copyFileSync(path.join(FIX, 'history', 'var', 'filestorage', 'Data.fs'), path.join(v, 'filestorage', 'Data.fs'));
  fs.mkdirSync(path.join(v, 'blobstorage'));
  const backups = path.join(v, 'backups');
  const blobBackups = path.join(v, 'blobstoragebackups');
  fs.mkdirSync(backups);
  fs.mkdirSync(blobBackups);
  const stamps: string[] = [];
  if (opts.repo !== false) {
    const src = path.join(FIX, 'history', 'repository-gzip');
    for (const n of fs.readdirSync(src)) {
      fs.copyFileSync(src + '/' + n, path.join(backups, n));
      fs.chmodSync(path.join(backups, n), 0o644);
      const m = /^(\d{4}(?:-\d\d){5})\.(fsz|deltafsz)$/.exec(n);
      if (m) stamps.push(nth(m, 1));
    }
  }
  for (const st of stamps) fs.mkdirSync(path.join(blobBackups, `blobstorage.${st}`, 'blobstorage'), { recursive: true });
  return { backups, blobBackups, stamps };
}

/** What the extension does on opening the folder: discover, list, check the backups. */
async function openFolder(root: string): Promise<void> {
  const dep = await discoverDeployment(root);
  await listDeployment(dep);
  await checkDeployment(dep, { backupsOnly: true });
}

const mkfifo = (p: string): void => void execFileSync('mkfifo', [p]);
const devZero = (p: string) => fs.symlinkSync('/dev/zero', p);
const DEPLOY_CODES = ['USAGE', 'SOURCE_MISSING', 'TOO_LARGE', 'UNSAFE', 'DAT_BAD', 'PIECE_BAD', 'FS_CORRUPT', 'INDEX_BAD', 'NOT_FILESTORAGE'];

/**
 * Each shape: `make` writes the hostile files into a scratch folder (in a
 * child of its own, unmeasured); `run` is what is measured, usually what the
 * extension does on opening the folder.
 */
export const SHAPES: Record<string, { codes: string[]; todo?: string; make: (scratch: string) => Promise<void> | void; run: (scratch: string) => Promise<unknown> }> = {
  'index: 300 KB of wide tuples': {
    codes: ['INDEX_BAD'],
    make: (scratch) => {
      const entry = Buffer.concat([Buffer.from([0x80, 0x03, 0x28]), Buffer.alloc(300_000, 0x4e), Buffer.from([0x74, 0x2e])]);
      fs.writeFileSync(path.join(scratch, 'x.index'), Buffer.concat([Buffer.from('80034b642e', 'hex'), entry, Buffer.from('80034e2e', 'hex')]));
    },
    run: (scratch) => readIndexFile(path.join(scratch, 'x.index')),
  },
  'index: a FIFO': { codes: ['INDEX_BAD'], make: (scratch) => void mkfifo(path.join(scratch, 'x.index')), run: (scratch) => readIndexFile(path.join(scratch, 'x.index')) },
  'index: a link to /dev/zero': { codes: ['INDEX_BAD'], make: (scratch) => devZero(path.join(scratch, 'x.index')), run: (scratch) => readIndexFile(path.join(scratch, 'x.index')) },
  'piece: a 1 MB .fsz whose header and .dat claim a 3 GB transaction': {
    codes: DEPLOY_CODES,
    make: async (scratch) => {
      const { backups } = shapeDeployment(scratch, { repo: false });
      const claimed = 3 * 2 ** 30;
      const f = path.join(backups, `${STAMP}.fsz`);
      await gzipTo(f, [Buffer.from('FS30'), shapeTxnHead(4, claimed, claimed - 23 - 4 - 42), Buffer.from(crandom(1 << 20))]);
      fs.writeFileSync(path.join(backups, `${STAMP}.dat`), formatDatLine({ path: f, start: 0, end: 4 + claimed + 8, md5: '0'.repeat(32) }));
    },
    run: openFolder,
  },
  'piece: a gzip bomb (1000x) holding one 100 MB transaction': {
    codes: DEPLOY_CODES,
    make: async (scratch) => {
      const { backups } = shapeDeployment(scratch, { repo: false });
      const plen = 100 << 20;
      const tlen = 23 + 4 + 42 + plen;
      const trailer = Buffer.alloc(8);
      trailer.writeBigUInt64BE(BigInt(tlen));
      await gzipTo(path.join(backups, `${STAMP}.fsz`), [Buffer.from('FS30'), shapeTxnHead(4, tlen, plen), plen, trailer]);
    },
    run: openFolder,
  },
  'piece: a gzip bomb (1000x) of zeros after a header claiming all of it': {
    codes: DEPLOY_CODES,
    make: async (scratch) => {
      const { backups } = shapeDeployment(scratch, { repo: false });
      const n = 100 << 20;
      await gzipTo(path.join(backups, `${STAMP}.fsz`), [Buffer.from('FS30'), shapeTxnHead(4, n + 23, n - 46), n]);
    },
    run: openFolder,
  },
  'piece: a FIFO under a piece name': {
    codes: DEPLOY_CODES,
    make: async (scratch) => {
      const { backups } = shapeDeployment(scratch);
      const victim = fs.readdirSync(backups).find((n) => n.endsWith('.deltafsz'))!;
      fs.rmSync(path.join(backups, victim));
      mkfifo(path.join(backups, victim));
    },
    run: openFolder,
  },
  ...Object.fromEntries(
    (
      [
        ['plone-backup.json', (root: string) => path.join(root, 'plone-backup.json')],
        ['zope.conf', (root: string) => path.join(root, 'zope.conf')],
        ['.dat', (root: string) => path.join(shapeDeployment(root).backups, `2026-01-05-10-00-00.dat`)],
        [
          '%include',
          (root: string) => (
            fs.writeFileSync(path.join(root, 'zope.conf'), '%include extra.conf\n<zodb_db main>\n<filestorage>\npath var/filestorage/Data.fs\n</filestorage>\n</zodb_db>\n'),
            path.join(root, 'extra.conf')
          ),
        ],
      ] as const
    ).flatMap(([what, where]) =>
      (
        [
          ['a FIFO', mkfifo],
          ['a link to /dev/zero', devZero],
        ] as const
      ).map(([kind, make]) => [
        `${what}: ${kind}`,
        {
          codes: DEPLOY_CODES,
          make: (scratch: string) => {
            if (what !== '.dat') shapeDeployment(scratch);
            const p = where(scratch);
            fs.rmSync(p, { force: true });
            make(p);
          },
          run: openFolder,
        },
      ]),
    ),
  ),
  'zope.conf: a chain of %defines doubling 28 times': {
    codes: DEPLOY_CODES,
    make: async (scratch) => {
      shapeDeployment(scratch);
      const lines = [`%define a0 ${'x'.repeat(1024)}`];
      for (let i = 1; i <= 28; i++) lines.push(`%define a${i} $a${i - 1}$a${i - 1}`);
      lines.push('<zodb_db main>', '<filestorage>', 'path $a28/Data.fs', '</filestorage>', '</zodb_db>');
      fs.writeFileSync(path.join(scratch, 'zope.conf'), lines.join('\n') + '\n');
    },
    run: openFolder,
  },
  'zope.conf: %include fanned out 64 x 64 x 64': {
    codes: DEPLOY_CODES,
    make: async (scratch) => {
      shapeDeployment(scratch);
      fs.writeFileSync(path.join(scratch, 'zope.conf'), '%include a.conf\n'.repeat(64));
      fs.writeFileSync(path.join(scratch, 'a.conf'), '%include b.conf\n'.repeat(64));
      fs.writeFileSync(path.join(scratch, 'b.conf'), '%include c.conf\n'.repeat(64));
      fs.writeFileSync(path.join(scratch, 'c.conf'), `# ${'z'.repeat(256)}\n`);
    },
    run: openFolder,
  },
  'manifest: 100,000 entries in the newest generation': {
    codes: DEPLOY_CODES,
    make: async (scratch) => {
      const { blobBackups, stamps } = shapeDeployment(scratch);
      const files = Array.from({ length: 100_000 }, (_, i) => [
        `0x00/0x00/0x00/0x00/0x00/0x00/0x${(i >> 8).toString(16).padStart(2, '0').slice(-2)}/0x${(i & 255).toString(16).padStart(2, '0')}/0x03e5a1b2c3d4e5f6.blob`,
        1 << 30,
      ]);
      const st = stamps[stamps.length - 1];
      fs.writeFileSync(path.join(blobBackups, `blobstorage.${st}`, '.plone-backup.json'), JSON.stringify({ version: 1, stamp: st, end: 4, layout: 'bushy', files }));
    },
    run: openFolder,
  },
  'manifest: hostile entries (../ paths, huge sizes, deep nesting)': {
    codes: DEPLOY_CODES,
    make: async (scratch) => {
      const { blobBackups, stamps } = shapeDeployment(scratch);
      const bodies = [
        JSON.stringify({
          version: 1,
          stamp: stamps[0],
          end: 2 ** 60,
          layout: 'bushy',
          files: [
            ['../../../etc/passwd', 2 ** 62],
            ['/etc/shadow', -1],
            [{}, []],
          ],
        }),
        '['.repeat(1 << 17),
        JSON.stringify({ version: 1, stamp: stamps[0], end: 4, layout: '../x', files: 'x'.repeat(1 << 20) }),
      ];
      stamps.forEach((st, i) => fs.writeFileSync(path.join(blobBackups, `blobstorage.${st}`, '.plone-backup.json'), nth(bodies, i % bodies.length)));
    },
    run: openFolder,
  },
  ...Object.fromEntries(
    (
      [
        ['a FIFO', mkfifo],
        ['a link to /dev/zero', devZero],
      ] as const
    ).map(([kind, make]) => [
      `manifest: ${kind}`,
      {
        codes: DEPLOY_CODES,
        make: (scratch: string) => {
          const { blobBackups, stamps } = shapeDeployment(scratch);
          make(path.join(blobBackups, `blobstorage.${stamps[0]}`, '.plone-backup.json'));
        },
        run: openFolder,
      },
    ]),
  ),
};

/** Incompressible bytes (a seeded xorshift), so a piece is as large on disk as it says. */
function crandom(n: number): Buffer {
  const b = Buffer.alloc(n);
  let x = 2463534242;
  for (let i = 0; i < n; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b.writeUInt32LE(x >>> 0, i);
  }
  return b;
}

/** Runs one shape in this process and reports what it cost (the child's side). */
export async function runShape(shape: string, scratch: string): Promise<ShapeReport> {
  const s = SHAPES[shape];
  if (!s) throw new Error(`no shape ${shape}`);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let maxBuffers = 0;
  const sample = () => {
    maxBuffers = Math.max(maxBuffers, process.memoryUsage().arrayBuffers);
  };
  const sampler = setInterval(sample, 5);
  let outcome: string;
  try {
    outcome = await typed(
      s.codes,
      () => shape,
      () => s.run(scratch),
    );
  } catch (e) {
    outcome = `FAILED: ${String((e as Error)?.message ?? e).slice(0, 1000)}`;
  }
  clearInterval(sampler);
  sample();
  const wallMs = Math.round(performance.now() - t0);
  const cpu = process.cpuUsage(cpu0);
  // maxRSS is the high-water mark of the whole process: loading the engine included, setup excluded (made by another child).
  return {
    shape,
    outcome,
    maxRssMb: Math.round(process.resourceUsage().maxRSS / 1024),
    maxBuffersMb: Math.round(maxBuffers / 2 ** 20),
    cpuMs: Math.round((cpu.user + cpu.system) / 1000),
    wallMs,
  };
}

// ---------------------------------------------------------------------------
// The worker

export async function runGroup(group: string, seed: number, scale: number, progress: (i: number) => void): Promise<GroupResult> {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'pb-fuzz-'));
  const rng = new Rng(seed);
  const res: GroupResult = { group, inputs: 0, outcomes: {}, maxMs: 0, maxRssMb: 0, failures: [] };
  const rss0 = process.memoryUsage().rss;
  const one = async (i: number, fn: () => Promise<string> | string) => {
    progress(i);
    const t0 = performance.now();
    let out: string;
    try {
      out = await fn();
    } catch (e) {
      if (res.failures.length < 5) res.failures.push(String((e as Error)?.message ?? e).slice(0, 2000));
      out = 'FAILED';
    }
    const ms = performance.now() - t0;
    res.maxMs = Math.max(res.maxMs, ms);
    const rss = process.memoryUsage().rss;
    res.maxRssMb = Math.max(res.maxRssMb, Math.round((rss - rss0) / 2 ** 20));
    if (rss - rss0 > 512 * 2 ** 20 && res.failures.length < 5) res.failures.push(`input ${i}: rss grew by ${Math.round((rss - rss0) / 2 ** 20)} MB`);
    res.outcomes[out] = (res.outcomes[out] ?? 0) + 1;
    res.inputs++;
  };
  try {
    if (group === 'filestorage: length fields of 2^63 and friends') {
      const cases = lengthCases();
      for (const [i, c] of cases.entries()) {
        await one(i, () => {
          const f = path.join(scratch, 'len.fs');
          fs.writeFileSync(f, c.data);
          return typed(
            FS_CODES,
            () => c.name,
            () => scanFile(f),
          );
        });
      }
    } else if (group === 'tar archives') {
      const cases = tarCases();
      for (const [i, c] of cases.entries()) await one(i, () => extractCase(c.data, !!c.gzip, scratch, i, c.name));
      // and mutations of a good archive (made by the hand-made writer above)
      const good = Buffer.concat([entry('blobstorage/.layout', Buffer.from('bushy\n')), entry('blobstorage/0x00/0x01/0x02.blob', Buffer.alloc(700, 9)), END]);
      const n = Math.round(400 * scale);
      for (let i = 0; i < n; i++) {
        const b = rng.mutate(good, 4);
        await one(cases.length + i, () => extractCase(b, false, scratch, cases.length + i, `mutation ${hex(b)}`));
      }
    } else {
      const g = must(GROUPS[group], 'GROUPS[group]');
      const n = Math.max(1, Math.round(g.n * scale));
      for (let i = 0; i < n; i++) await one(i, () => g.run(rng, i, scratch));
    }
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
  return res;
}

if (parentPort && workerData?.fuzzGroup) {
  const port = parentPort;
  const { fuzzGroup, seed, scale } = workerData as { fuzzGroup: string; seed: number; scale: number };
  runGroup(fuzzGroup, seed, scale, (i) => port.postMessage({ progress: i })).then(
    (r) => port.postMessage({ done: r }),
    (e) => port.postMessage({ error: String((e as Error)?.stack ?? e) }),
  );
}

// `node fuzzcases.js --make|--shape NAME SCRATCH`: writes, or runs, one hostile shape in a fresh process (see fuzz.test.ts).
if (require.main === module && process.argv[2] === '--make') {
  Promise.resolve(must(SHAPES[nth(process.argv, 3)], 'SHAPES[nth(process.argv, 3)]').make(nth(process.argv, 4))).then(
    () => process.exit(0),
    (e) => {
      process.stderr.write(String((e as Error)?.stack ?? e));
      process.exit(2);
    },
  );
}
if (require.main === module && process.argv[2] === '--shape') {
  runShape(nth(process.argv, 3), nth(process.argv, 4)).then(
    (r) => {
      process.stdout.write(`${JSON.stringify(r)}\n`);
      process.exit(0);
    },
    (e) => {
      process.stderr.write(String((e as Error)?.stack ?? e));
      process.exit(2);
    },
  );
}

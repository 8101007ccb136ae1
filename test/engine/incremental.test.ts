/**
 * GNU tar listed-incremental blob archives (archive/incremental.ts), with the
 * real GNU tar as the oracle:
 *
 * - the recipe's own chain (test/fixtures/recipe/archive-incremental): every
 *   stamp replays and extracts to exactly the blob files the recipe restores;
 * - our full and deltas (deletions, new nested folders; plain and gzip) are
 *   extracted by `tar xf X --incremental` in order, as the recipe's restore
 *   does, into exactly our file set, and by our reader too;
 * - GNU tar's own chains (adds and deletes between runs) read by us give
 *   what GNU tar extracts;
 * - our .snar is continued by `tar --listed-incremental`, which then dumps
 *   only what is new;
 * - hostile archives are ARCHIVE_BAD and write nothing.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  encodeGnuHeader,
  extractIncremental,
  readIncrementalArchive,
  readSnar,
  replayIncremental,
  replayIncrementalTree,
  snarFiles,
  writeIncrementalDelta,
  writeIncrementalFull,
} from '../../src/engine/internal';
import { rejectsWith } from '../support/assert';
import { tmpDir } from '../support/fs';
import { ROOT } from '../support/paths';

const FIXTURE = path.join(ROOT, 'test', 'fixtures', 'recipe', 'archive-incremental');

function gnuTar(args: string[]): string {
  const r = spawnSync('tar', args, { encoding: 'utf8' });
  assert.equal(r.status, 0, `tar ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** The recipe's restore (restore_blobs_archive): a fresh folder, then each archive in order, --incremental when more than one. */
function recipeRestore(archives: string[], dest: string): void {
  fs.mkdirSync(dest);
  for (const a of archives) gnuTar([a.endsWith('gz') ? 'xzf' : 'xf', a, ...(archives.length > 1 ? ['--incremental'] : []), '-C', dest]);
}

interface Tree {
  files: Record<string, string>;
  dirs: string[];
}

/** Files (relative path → md5) and folders of `dir`, nothing followed. */
function treeOf(dir: string): Tree {
  const files: Record<string, string> = {};
  const dirs: string[] = [];
  const walk = (rel: string) => {
    for (const name of fs.readdirSync(path.join(dir, rel)).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const st = fs.lstatSync(path.join(dir, r));
      if (st.isDirectory()) {
        dirs.push(r);
        walk(r);
      } else {
        assert.ok(st.isFile(), `${r} is a regular file`);
        files[r] = createHash('md5')
          .update(fs.readFileSync(path.join(dir, r)))
          .digest('hex');
      }
    }
  };
  walk('');
  return { files, dirs: dirs.sort() };
}

function put(root: string, rel: string, content: string): void {
  fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
  fs.writeFileSync(path.join(root, rel), content);
}

const md5 = (s: string) => createHash('md5').update(s).digest('hex');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('the recipe’s incremental blob archives', () => {
  const dir = path.join(FIXTURE, 'var', 'blobstoragebackups');
  const expected = JSON.parse(fs.readFileSync(path.join(FIXTURE, 'expected.json'), 'utf8')) as Record<string, { blobs: Record<string, string> }>;
  const stamps = Object.keys(expected).sort();
  const chainFor = (stamp: string): string[] => {
    const names = fs.readdirSync(dir).filter((n) => /\.tar(\.gz)?$/.test(n));
    const full = names.find((n) => !n.includes('.delta.'))!;
    const deltas = names.filter((n) => n.includes('.delta.') && n.split('.')[1]! <= stamp).sort();
    return [full, ...deltas].map((n) => path.join(dir, n));
  };

  for (const stamp of stamps) {
    it(`restores ${stamp}: exactly the recipe’s blob files`, async (t) => {
      const chain = chainFor(stamp);
      const want = expected[stamp]!.blobs;
      const files = await replayIncremental(chain);
      const blobs = [...files.keys()].filter((k) => k.endsWith('.blob')).sort();
      assert.deepEqual(blobs, Object.keys(want).sort());
      assert.deepEqual(
        [...files.keys()].filter((k) => !k.endsWith('.blob')),
        ['.layout'],
      );
      // A file's bytes come from the archive that added it last.
      for (const [, f] of files) assert.ok(chain.includes(f.archive));

      const tmp = tmpDir(t);
      const ours = path.join(tmp, 'ours');
      const r = await extractIncremental(chain, ours, { modes: { file: 0o640, dir: 0o750 } });
      assert.equal(r.files, files.size);
      const got = treeOf(ours);
      for (const [rel, sum] of Object.entries(want)) assert.equal(got.files[rel], sum, rel);
      // And GNU tar, as the recipe runs it, makes the very same tree.
      recipeRestore(chain, path.join(tmp, 'gnu'));
      assert.deepEqual(got, treeOf(path.join(tmp, 'gnu')));
      // Modes no more open than asked.
      for (const rel of Object.keys(got.files)) assert.equal(fs.statSync(path.join(ours, rel)).mode & ~0o640 & 0o777, 0, rel);
    });
  }

  it('reads the dumpdirs of a delta', async () => {
    const a = await readIncrementalArchive(chainFor(stamps[1]!)[1]!);
    assert.equal(a.incremental, true);
    assert.equal(a.gzip, false);
    const root = a.members[0]!;
    assert.equal(root.kind, 'dir');
    assert.equal(root.path, '');
    assert.deepEqual(root.kind === 'dir' ? root.dumpdir : undefined, [
      { code: 'N', name: '.layout' },
      { code: 'D', name: '0x00' },
      { code: 'D', name: 'tmp' },
    ]);
    assert.ok(a.members.every((m) => !m.path.startsWith('./')));
  });

  it('reads the recipe’s snapshot file', async () => {
    const snar = await readSnar(path.join(dir, `blobstorage.${stamps[0]}.snar`));
    const files = snarFiles(snar);
    // The snapshot was last updated by the newest delta: it records that state.
    assert.deepEqual([...files].filter((f) => f.endsWith('.blob')).sort(), Object.keys(expected[stamps[stamps.length - 1]!]!.blobs).sort());
  });
});

describe('our incremental archives, restored by GNU tar', () => {
  for (const gzip of [false, true]) {
    it(`full, a delta that deletes, a delta with new nested folders${gzip ? ' (gzip)' : ''}`, async (t) => {
      const tmp = tmpDir(t);
      const root = path.join(tmp, 'blobstorage');
      const out = path.join(tmp, 'backups');
      fs.mkdirSync(out);
      const ext = gzip ? '.tar.gz' : '.tar';
      const snar = path.join(out, 'blobstorage.1.snar');
      const states: Record<string, string>[] = [];
      const set = (files: string[]) => Object.fromEntries(files.sort().map((f) => [f, md5(`content of ${f}`)]));

      put(root, '.layout', 'bushy\n');
      const s1 = ['.layout', 'a/1/x.blob', 'a/1/y.blob', 'a/2/z.blob', 'b/w.blob', 'b/v.blob', 'c/only.blob'];
      for (const f of s1) if (f !== '.layout') put(root, f, `content of ${f}`);
      fs.writeFileSync(path.join(root, '.layout'), 'content of .layout');
      // Not ours: ZODB's tmp/ and a blob of an uncommitted transaction.
      put(root, 'tmp/upload', 'uncommitted');
      put(root, 'a/1/pending.blob', 'not yet committed');
      const archives: string[] = [];
      const p1 = await writeIncrementalFull({ tar: path.join(out, `blobstorage.1${ext}`), snar, root, files: s1, gzip });
      assert.deepEqual(p1.added, [...s1].sort());
      await p1.commit();
      archives.push(path.join(out, `blobstorage.1${ext}`));
      states.push(set(s1));

      // A pack: some files and a whole folder gone, one added in an existing folder.
      for (const f of ['a/1/y.blob', 'c/only.blob']) fs.rmSync(path.join(root, f));
      fs.rmSync(path.join(root, 'c'), { recursive: true });
      put(root, 'b/u.blob', 'content of b/u.blob');
      const s2 = ['.layout', 'a/1/x.blob', 'a/2/z.blob', 'b/w.blob', 'b/v.blob', 'b/u.blob'];
      const p2 = await writeIncrementalDelta({ tar: path.join(out, `blobstorage.2.delta${ext}`), snar, root, files: s2, gzip });
      assert.deepEqual(p2.added, ['b/u.blob']);
      await p2.commit();
      archives.push(path.join(out, `blobstorage.2.delta${ext}`));
      states.push(set(s2));

      // New nested folders (and a folder that was deleted comes back), one more deletion.
      for (const f of ['d/e/f/g.blob', 'd/e/h.blob', 'c/again.blob']) put(root, f, `content of ${f}`);
      fs.rmSync(path.join(root, 'b/w.blob'));
      const s3 = ['.layout', 'a/1/x.blob', 'a/2/z.blob', 'b/v.blob', 'b/u.blob', 'd/e/f/g.blob', 'd/e/h.blob', 'c/again.blob'];
      // previous given by the caller (the state the chain holds), not read from the snar.
      const p3 = await writeIncrementalDelta({ tar: path.join(out, `blobstorage.3.delta${ext}`), snar, root, files: s3, gzip, previous: new Set(s2) });
      assert.deepEqual(p3.added, ['c/again.blob', 'd/e/f/g.blob', 'd/e/h.blob']);
      await p3.commit();
      archives.push(path.join(out, `blobstorage.3.delta${ext}`));
      states.push(set(s3));
      assert.deepEqual([...snarFiles(await readSnar(snar))].sort(), [...s3].sort());
      // No temp files left behind.
      assert.deepEqual(fs.readdirSync(out).sort(), ['blobstorage.1.snar', `blobstorage.1${ext}`, `blobstorage.2.delta${ext}`, `blobstorage.3.delta${ext}`].sort());

      for (let k = 1; k <= archives.length; k++) {
        const chain = archives.slice(0, k);
        const gnu = path.join(tmp, `gnu${k}`);
        recipeRestore(chain, gnu);
        assert.deepEqual(treeOf(gnu).files, states[k - 1], `GNU tar's restore of ${k} archives`);
        const ours = path.join(tmp, `ours${k}`);
        await extractIncremental(chain, ours);
        assert.deepEqual(treeOf(ours), treeOf(gnu), `our restore of ${k} archives`);
        assert.deepEqual(Object.fromEntries([...(await replayIncremental(chain)).keys()].sort().map((f) => [f, states[k - 1]![f]])), states[k - 1]);
      }
      // The deleted folder's file is not read back from the full: it comes from the last delta.
      const files = await replayIncremental(archives);
      assert.equal(files.get('c/again.blob')!.archive, archives[2]);
      assert.equal(files.get('a/1/x.blob')!.archive, archives[0]);
    });
  }

  it('a long member name (over 100 bytes) goes through GNU long-name records', async (t) => {
    const tmp = tmpDir(t);
    const root = path.join(tmp, 'root');
    const long = `${'d'.repeat(60)}/${'e'.repeat(60)}/${'f'.repeat(70)}.blob`;
    put(root, long, 'long');
    const tar = path.join(tmp, 'x.tar');
    await (await writeIncrementalFull({ tar, snar: path.join(tmp, 'x.snar'), root, files: [long] })).commit();
    recipeRestore([tar], path.join(tmp, 'gnu'));
    assert.deepEqual(treeOf(path.join(tmp, 'gnu')).files, { [long]: md5('long') });
    assert.deepEqual([...(await replayIncremental([tar])).keys()], [long]);
  });

  it('refuses links in the tree it archives, and an existing archive', async (t) => {
    const tmp = tmpDir(t);
    const root = path.join(tmp, 'root');
    put(root, 'a/x.blob', 'x');
    fs.symlinkSync('/etc/passwd', path.join(root, 'a', 'link.blob'));
    fs.symlinkSync(path.join(root, 'a'), path.join(root, 'linkdir'));
    await rejectsWith(writeIncrementalFull({ tar: path.join(tmp, '1.tar'), snar: path.join(tmp, '1.snar'), root, files: ['a/link.blob'] }), 'UNSAFE');
    await rejectsWith(writeIncrementalFull({ tar: path.join(tmp, '2.tar'), snar: path.join(tmp, '2.snar'), root, files: ['linkdir/x.blob'] }), 'UNSAFE');
    await rejectsWith(writeIncrementalFull({ tar: path.join(tmp, '3.tar'), snar: path.join(tmp, '3.snar'), root, files: ['../x.blob'] }), 'ARCHIVE_BAD');
    fs.writeFileSync(path.join(tmp, '4.tar'), '');
    await rejectsWith(writeIncrementalFull({ tar: path.join(tmp, '4.tar'), snar: path.join(tmp, '4.snar'), root, files: ['a/x.blob'] }), 'WOULD_OVERWRITE');
    // Nothing but the pre-existing file: no temp left behind by the refusals.
    assert.deepEqual(fs.readdirSync(tmp).sort(), ['4.tar', 'root']);
  });
});

describe('GNU tar’s own listed-incremental archives, read by us', () => {
  for (const gzip of [false, true]) {
    it(`adds and deletes between runs${gzip ? ' (gzip)' : ''}`, async (t) => {
      const tmp = tmpDir(t);
      const root = path.join(tmp, 'root');
      const snar = path.join(tmp, 's.snar');
      const c = gzip ? 'czf' : 'cf';
      const ext = gzip ? '.tar.gz' : '.tar';
      const archives: string[] = [];
      const dump = (n: number) => {
        const a = path.join(tmp, `${n}${n ? '.delta' : ''}${ext}`);
        gnuTar([c, a, `--listed-incremental=${snar}`, '-C', root, '.']);
        archives.push(a);
      };
      for (const f of ['.layout', 'x/1/a', 'x/1/b', 'x/2/c', 'y/d', 'z/e']) put(root, f, f);
      fs.mkdirSync(path.join(root, 'tmp'));
      dump(0);
      fs.rmSync(path.join(root, 'x/1/b'));
      fs.rmSync(path.join(root, 'z'), { recursive: true });
      put(root, 'x/2/new', 'new');
      put(root, 'w/v/u/deep', 'deep');
      dump(1);
      fs.rmSync(path.join(root, 'x'), { recursive: true });
      put(root, 'z/back', 'back');
      put(root, 'y/d2', 'd2');
      dump(2);
      assert.deepEqual((await readSnar(snar)).dirs.length > 0, true);
      assert.deepEqual([...snarFiles(await readSnar(snar))].sort(), Object.keys(treeOf(root).files).sort());

      for (let k = 1; k <= archives.length; k++) {
        const chain = archives.slice(0, k);
        const gnu = path.join(tmp, `gnu${k}`);
        recipeRestore(chain, gnu);
        const ours = path.join(tmp, `ours${k}`);
        await extractIncremental(chain, ours);
        assert.deepEqual(treeOf(ours), treeOf(gnu), `${k} archives`);
        const tree = await replayIncrementalTree(chain);
        assert.deepEqual([...tree.files.keys()].sort(), Object.keys(treeOf(gnu).files).sort());
        assert.deepEqual([...tree.dirs].filter((d) => d !== '').sort(), treeOf(gnu).dirs);
      }
      assert.deepEqual(treeOf(path.join(tmp, 'ours3')).files, treeOf(root).files);
    });
  }

  it('folder renames (crossing, through the temp folder) replay as GNU tar does', async (t) => {
    const tmp = tmpDir(t);
    const root = path.join(tmp, 'root');
    for (const f of ['a/one', 'b/two', 'c/three', 'keep']) put(root, f, f);
    const full = path.join(tmp, 'full.tar');
    await (await writeIncrementalFull({ tar: full, snar: path.join(tmp, 'full.snar'), root, files: ['a/one', 'b/two', 'c/three', 'keep'] })).commit();
    // a and b swap names; c becomes d/e (in a new folder); 'keep' stays.
    const block = (b: Buffer) => Buffer.concat([b, Buffer.alloc((512 - (b.length % 512)) % 512)]);
    const dir = (name: string, listing: string) =>
      Buffer.concat([encodeGnuHeader({ name, mode: 0o755, size: Buffer.byteLength(listing), mtime: 0, type: 'D' }), block(Buffer.from(listing))]);
    const delta = path.join(tmp, 'delta.tar');
    fs.writeFileSync(
      delta,
      Buffer.concat([
        dir('./', 'Da\0Db\0Dd\0Nkeep\0X./\0R./a\0T\0R./b\0T./a\0R\0T./b\0R./c\0T./d/e\0\0'),
        dir('./a/', 'Ntwo\0\0'),
        dir('./b/', 'None\0\0'),
        dir('./d/', 'De\0\0'),
        dir('./d/e/', 'Nthree\0\0'),
        Buffer.alloc(1024),
      ]),
    );
    const gnu = path.join(tmp, 'gnu');
    recipeRestore([full, delta], gnu);
    assert.deepEqual(treeOf(gnu).files, { 'a/two': md5('b/two'), 'b/one': md5('a/one'), 'd/e/three': md5('c/three'), keep: md5('keep') });
    const ours = path.join(tmp, 'ours');
    await extractIncremental([full, delta], ours);
    assert.deepEqual(treeOf(ours), treeOf(gnu));
    const files = await replayIncremental([full, delta]);
    assert.equal(files.get('a/two')!.archive, full);
  });

  it('a plain (non-incremental) archive gives its file set', async (t) => {
    const tmp = tmpDir(t);
    const root = path.join(tmp, 'root');
    for (const f of ['a/b', 'c']) put(root, f, f);
    gnuTar(['cf', path.join(tmp, 'p.tar'), '-C', root, '.']);
    const a = await readIncrementalArchive(path.join(tmp, 'p.tar'));
    assert.equal(a.incremental, false);
    assert.deepEqual([...(await replayIncremental([path.join(tmp, 'p.tar')])).keys()].sort(), ['a/b', 'c']);
  });
});

describe('our snapshot file, continued by GNU tar', () => {
  it('tar --listed-incremental=OUR.snar dumps only what is new, and the chain restores', async (t) => {
    const tmp = tmpDir(t);
    const root = path.join(tmp, 'blobstorage');
    const s1 = ['.layout', '0x00/0x01/a.blob', '0x00/0x01/b.blob', '0x00/0x02/c.blob'];
    for (const f of s1) put(root, f, f);
    put(root, '0x00/0x02/uncommitted.blob', 'u');
    put(root, 'tmp/t', 't');
    await sleep(20); // the snapshot's time (ms) after every file's mtime and ctime
    const snar = path.join(tmp, 'blobstorage.1.snar');
    const full = path.join(tmp, 'blobstorage.1.tar');
    await (await writeIncrementalFull({ tar: full, snar, root, files: s1 })).commit();
    assert.deepEqual(treeOf(path.join(tmp, '.')).files['blobstorage.1.snar'] !== undefined, true);

    put(root, '0x00/0x03/d.blob', 'd');
    fs.rmSync(path.join(root, '0x00/0x01/b.blob'));
    const delta = path.join(tmp, 'blobstorage.2.delta.tar');
    gnuTar(['cf', delta, `--listed-incremental=${snar}`, '-C', root, '.']);
    const members = gnuTar(['tf', delta])
      .split('\n')
      .filter((l) => l && !l.endsWith('/'));
    // Only what our archive lacks: the new blob, and what we left out (ZODB's tmp/, the uncommitted blob).
    assert.deepEqual(members.sort(), ['./0x00/0x02/uncommitted.blob', './0x00/0x03/d.blob', './tmp/t']);

    const gnu = path.join(tmp, 'gnu');
    recipeRestore([full, delta], gnu);
    assert.deepEqual(treeOf(gnu), treeOf(root));
    const ours = path.join(tmp, 'ours');
    await extractIncremental([full, delta], ours);
    assert.deepEqual(treeOf(ours), treeOf(root));

    // And our delta continues GNU tar's updated snapshot file.
    put(root, '0x00/0x04/e.blob', 'e');
    fs.rmSync(path.join(root, '0x00/0x02/uncommitted.blob'));
    const now = Object.keys(treeOf(root).files).filter((f) => !f.startsWith('tmp/'));
    const d3 = path.join(tmp, 'blobstorage.3.delta.tar');
    const p = await writeIncrementalDelta({ tar: d3, snar, root, files: now });
    assert.deepEqual(p.added, ['0x00/0x04/e.blob']);
    await p.commit();
    const gnu3 = path.join(tmp, 'gnu3');
    recipeRestore([full, delta, d3], gnu3);
    assert.deepEqual(Object.keys(treeOf(gnu3).files).sort(), now.sort());
  });
});

describe('hostile incremental archives', () => {
  const block = (b: Buffer) => Buffer.concat([b, Buffer.alloc((512 - (b.length % 512)) % 512)]);
  const dirMember = (name: string, listing: Buffer, size = listing.length) => Buffer.concat([encodeGnuHeader({ name, mode: 0o755, size, mtime: 0, type: 'D' }), block(listing)]);
  const fileMember = (name: string, data: string) => Buffer.concat([encodeGnuHeader({ name, mode: 0o644, size: data.length, mtime: 0, type: '0' }), block(Buffer.from(data))]);
  const end = Buffer.alloc(1024);

  const cases: [string, Buffer][] = [
    ['a dumpdir naming ../x', Buffer.concat([dirMember('./', Buffer.from('Y../x\0\0')), fileMember('./a', 'a'), end])],
    ['a dumpdir naming a/b', Buffer.concat([dirMember('./', Buffer.from('Ya/b\0\0')), end])],
    ['a truncated dumpdir', Buffer.concat([dirMember('./', Buffer.from('Yabc')), end])],
    ['a dumpdir cut off by the end of the archive', dirMember('./', Buffer.from('Yabc\0\0'), 4096).subarray(0, 512 + 6)],
    ['an absurdly large dumpdir', Buffer.concat([dirMember('./', Buffer.alloc(0), 2 ** 40), end])],
    ['a rename in a dumpdir', Buffer.concat([dirMember('./', Buffer.from('Rold\0Tnew\0\0')), end])],
    ['an unknown dumpdir code', Buffer.concat([dirMember('./', Buffer.from('Qx\0\0')), end])],
    ['a symbolic link member', Buffer.concat([fileMember('./a', 'a'), encodeGnuHeader({ name: './evil', mode: 0o777, size: 0, mtime: 0, type: '2' }), end])],
    ['a member outside the root', Buffer.concat([dirMember('./', Buffer.from('Ya\0\0')), fileMember('../a', 'a'), end])],
    ['an absolute member', Buffer.concat([fileMember('/tmp/a', 'a'), end])],
    ['a file below a file', Buffer.concat([fileMember('./a', 'a'), fileMember('./a/b', 'b'), end])],
  ];
  for (const [what, bytes] of cases) {
    it(`refuses ${what}: ARCHIVE_BAD, nothing written`, async (t) => {
      const tmp = tmpDir(t);
      const a = path.join(tmp, 'evil.tar');
      fs.writeFileSync(a, bytes);
      const good = path.join(tmp, 'good.tar');
      fs.writeFileSync(good, Buffer.concat([dirMember('./', Buffer.from('Ygood\0\0')), fileMember('./good', 'g'), end]));
      const dest = path.join(tmp, 'sub', 'dest');
      fs.mkdirSync(path.join(tmp, 'sub'));
      await rejectsWith(extractIncremental([good, a], dest), 'ARCHIVE_BAD');
      await rejectsWith(replayIncremental([a]), 'ARCHIVE_BAD');
      assert.deepEqual(fs.readdirSync(path.join(tmp, 'sub')), [], 'nothing extracted, not even the good archive');
      assert.deepEqual(fs.readdirSync(tmp).sort(), ['evil.tar', 'good.tar', 'sub']);
    });
  }

  it('refuses a damaged snapshot file and a non-empty destination', async (t) => {
    const tmp = tmpDir(t);
    fs.writeFileSync(path.join(tmp, 'bad.snar'), 'GNU tar-1.34-2\n1\x000\x000\x001\x000\x001\x002\x00./x\x00Y../y\x00\x00\x00');
    await rejectsWith(readSnar(path.join(tmp, 'bad.snar')), 'ARCHIVE_BAD');
    fs.writeFileSync(path.join(tmp, 'old.snar'), '1234\n');
    await rejectsWith(readSnar(path.join(tmp, 'old.snar')), 'ARCHIVE_BAD');
    fs.writeFileSync(path.join(tmp, 'cut.snar'), 'GNU tar-1.34-2\n1\x000\x000\x001\x000\x001\x002\x00./x\x00Yy');
    await rejectsWith(readSnar(path.join(tmp, 'cut.snar')), 'ARCHIVE_BAD');
    const dest = path.join(tmp, 'dest');
    fs.mkdirSync(dest);
    fs.writeFileSync(path.join(dest, 'keep'), 'k');
    const root = path.join(tmp, 'root');
    put(root, 'a', 'a');
    const tar = path.join(tmp, 'a.tar');
    await (await writeIncrementalFull({ tar, snar: path.join(tmp, 'a.snar'), root, files: ['a'] })).commit();
    await rejectsWith(extractIncremental([tar], dest), 'WOULD_OVERWRITE');
    assert.deepEqual(fs.readdirSync(dest), ['keep']);
  });
});

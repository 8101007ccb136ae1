/**
 * `check` reads each backup piece once (issue 11): the listing's walk of a
 * piece (transactions, blob references) and the verification of its size and
 * md5 are one read. Counted at the file: every open of a piece and every byte
 * read from it, through an instrumented fs.promises.open.
 */
import { describe, it, type TestContext } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { backupDeployment, checkDeployment, discoverDeployment, CACHE_FILE } from '../../src/engine/internal';
import { fakeClock } from '../support/fixtures';
import { content, tmpDir } from '../support/fs';
import { makeSite } from '../support/site';
import { xorByte } from '../support/must';

const PIECE = /\.(fs|fsz|deltafs|deltafsz)$/;

/** Counts opens and bytes read of the backup pieces under `dir` until the test ends. */
function countReads(t: TestContext, dir: string): { opens: Map<string, number>; bytes: Map<string, number> } {
  const opens = new Map<string, number>();
  const bytes = new Map<string, number>();
  const real = fs.promises.open;
  fs.promises.open = async function (this: unknown, ...args: Parameters<typeof real>) {
    const fh = await real.apply(fs.promises, args);
    const p = String(args[0]);
    if (p.startsWith(dir) && PIECE.test(p)) {
      opens.set(p, (opens.get(p) ?? 0) + 1);
      const read = fh.read.bind(fh) as (...a: unknown[]) => Promise<{ bytesRead: number; buffer: Buffer }>;
      (fh as unknown as { read: unknown }).read = async (...a: unknown[]) => {
        const r = await read(...a);
        bytes.set(p, (bytes.get(p) ?? 0) + r.bytesRead);
        return r;
      };
    }
    return fh;
  } as typeof real;
  t.after(() => {
    fs.promises.open = real;
  });
  return { opens, bytes };
}

async function deploymentWithChain(t: TestContext, gzip: boolean) {
  const root = tmpDir(t);
  const s = await makeSite(t, root, { files: 2 });
  const dep = await discoverDeployment(root);
  dep.settings.gzip = gzip;
  const clock = fakeClock();
  await backupDeployment(dep, 'backup', { now: clock.now });
  for (let i = 0; i < 3; i++) {
    await s.site.uploadFile(`more${i}.pdf`, content(`more${i}`, 5000));
    await backupDeployment(dep, 'backup', { now: clock.now });
  }
  await s.site.close();
  const repo = path.join(s.varDir, 'backups');
  const pieces = fs
    .readdirSync(repo)
    .filter((n) => PIECE.test(n))
    .map((n) => path.join(repo, n));
  assert.equal(pieces.length, 4);
  return { dep, repo, pieces };
}

for (const gzip of [true, false]) {
  describe(`check reads each piece once (${gzip ? 'gzip' : 'plain'} pieces)`, () => {
    it('with no piece cache: the walk that describes a piece also verifies it', async (t) => {
      const { dep, repo, pieces } = await deploymentWithChain(t, gzip);
      fs.rmSync(path.join(repo, CACHE_FILE), { force: true });
      const { opens, bytes } = countReads(t, repo);
      assert.deepEqual(await checkDeployment(dep, { backupsOnly: true }), []);
      for (const p of pieces) {
        assert.equal(opens.get(p), 1, `${path.basename(p)} opened ${opens.get(p)} times`);
        // Every byte once (a gzip member's header is looked at before the member is read: a few bytes twice).
        const size = fs.statSync(p).size;
        const read = bytes.get(p)!;
        assert.ok(read >= size && read < size + 100, `${path.basename(p)}: ${read} bytes read of ${size}`);
      }
      // The walk wrote the cache: the next check reads each piece once, to verify it.
      assert.ok(fs.existsSync(path.join(repo, CACHE_FILE)));
      opens.clear();
      bytes.clear();
      assert.deepEqual(await checkDeployment(dep, { backupsOnly: true }), []);
      for (const p of pieces) {
        assert.equal(opens.get(p), 1, `${path.basename(p)} opened ${opens.get(p)} times (cached)`);
        const size = fs.statSync(p).size;
        assert.ok(bytes.get(p)! >= size && bytes.get(p)! < size + 100);
      }
    });

    it('a damaged piece is still found from that one read', async (t) => {
      const { dep, repo, pieces } = await deploymentWithChain(t, gzip);
      const last = pieces.sort().at(-1)!;
      const b = fs.readFileSync(last);
      xorByte(b, b.length - (gzip ? 12 : 30), 0xff);
      fs.writeFileSync(last, b);
      const { opens } = countReads(t, repo);
      const findings = await checkDeployment(dep, { backupsOnly: true });
      assert.ok(
        findings.some((f) => f.code === 'REPOSITORY_INVALID' && f.file === last && f.severity === 'error'),
        JSON.stringify(findings, null, 1),
      );
      for (const p of pieces) assert.equal(opens.get(p), 1, `${path.basename(p)} opened ${opens.get(p)} times`);
    });
  });
}

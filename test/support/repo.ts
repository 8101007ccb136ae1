/**
 * The states of a repository and of a live site, to compare before and after
 * a kill: what every registered backup restores to, whether every chain
 * verifies, the live Data.fs and its blob files.
 */
import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { PloneBackupError, allChains, committedEnd, datName, listRepository, readDat, recover, verifyChain } from '../../src/engine/internal';
import { blobContents, md5, md5File } from './fs';
import { nth } from './must';

/** md5 of what `recover` writes for the chain as of `date` (the newest when undefined), or the error code. */
export async function recoverMd5(repo: string, date?: string): Promise<string> {
  const h = createHash('md5');
  const sink = new Writable({
    write(c: Buffer, _e, cb) {
      h.update(c);
      cb();
    },
  });
  try {
    await recover({ repository: repo, date, stream: sink });
  } catch (e) {
    if (PloneBackupError.is(e)) return `error:${e.code}`;
    throw e;
  }
  return h.digest('hex');
}

/** Stamps of every piece a .dat registers (and that exists). */
export async function registeredStamps(repo: string): Promise<string[]> {
  let files;
  try {
    ({ files } = await listRepository(repo));
  } catch (e) {
    if (PloneBackupError.is(e, 'REPO_MISSING')) return [];
    throw e;
  }
  const out: string[] = [];
  for (const chain of allChains(files)) {
    const lines = await readDat(path.join(repo, datName(nth(chain, 0).stamp))).catch(() => undefined);
    if (!lines) continue;
    const listed = new Set(lines.map((l) => path.basename(l.path)));
    for (const f of chain) if (listed.has(f.name)) out.push(f.stamp);
  }
  return out;
}

/** What every registered state of a repository restores to: stamp -> md5. */
export async function repoStates(repo: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const s of await registeredStamps(repo)) out[s] = await recoverMd5(repo, s);
  return out;
}

/**
 * Right after a kill: every piece a .dat registers matches it; a piece no
 * .dat registers (or a full without its .dat) may only be the killed run's
 * own, newer than every state known before.
 */
export async function verifyAfterKill(repo: string, known: string[]): Promise<void> {
  let files;
  try {
    ({ files } = await listRepository(repo));
  } catch (e) {
    if (PloneBackupError.is(e, 'REPO_MISSING')) return;
    throw e;
  }
  const newest = known.length ? known.reduce((a, b) => (a > b ? a : b)) : '';
  for (const chain of allChains(files)) {
    let r;
    try {
      r = await verifyChain(repo, chain);
    } catch (e) {
      if (PloneBackupError.is(e, 'DAT_BAD') && /missing/.test(e.message) && chain.length === 1 && nth(chain, 0).stamp > newest) continue;
      throw e;
    }
    for (const p of r.pieces) assert.equal(p.problem, undefined, `${repo}: ${p.problem}`);
    for (const n of r.unregistered) assert.ok(n.slice(0, 19) > newest, `${repo}: ${n} was registered before the kill and is no longer`);
  }
}

/** What keeps the chains of a repository from verifying completely (a piece's problem, an unregistered file): none when all is well. */
export async function chainProblems(repo: string): Promise<{ chains: number; problems: string[] }> {
  const { files } = await listRepository(repo);
  const problems: string[] = [];
  let chains = 0;
  for (const chain of allChains(files)) {
    const r = await verifyChain(repo, chain);
    chains++;
    if (!r.ok) problems.push(`${repo}: chain ${nth(chain, 0).name} does not verify: ${JSON.stringify(r.pieces.filter((p) => p.problem))} unregistered ${r.unregistered}`);
  }
  return { chains, problems };
}

/** Every chain verifies completely (nothing unregistered); returns how many chains there are. */
export async function verifyClean(repo: string): Promise<number> {
  const { chains, problems } = await chainProblems(repo);
  assert.deepEqual(problems, [], problems.join('; '));
  return chains;
}

/** The live state of one storage: Data.fs md5 and its blob files (rel -> md5). */
export interface LiveState {
  data: string;
  blobs: Record<string, string>;
}

export function liveState(file: string, blobDir?: string): LiveState {
  return { data: md5File(file), blobs: blobDir ? blobContents(blobDir) : {} };
}

/** The committed end of a Data.fs and the md5 of the bytes before it. */
export async function committedMd5(file: string): Promise<{ end: number; md5: string; size: number }> {
  const r = await committedEnd(file);
  const b = fs.readFileSync(file);
  return { end: r.end, md5: md5(b.subarray(0, r.end)), size: b.length };
}

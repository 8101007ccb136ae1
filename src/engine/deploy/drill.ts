/**
 * A restore drill ("test your restores"): restore the newest (or every)
 * generation of each storage into a temporary folder, read every
 * transaction, compare the restored index with one rebuilt from the data,
 * check that every blob the state references is there, and report what was
 * proved and how long the restore took. The live site is never touched.
 */

import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openFileStorage, scanRange } from '../zodb/filestorage';
import { BlobCollector } from '../zodb/blobrefs';
import { FsIndex, readIndexFile } from '../zodb/fsindex';
import { blobRelPath, readLayout } from '../zodb/blobdir';
import { PloneBackupError, checkAbort } from '../base/errors';
import { allChains, listRepository } from '../repozo/repository';
import { fileLayer } from '../base/io';
import type { OperationOptions } from '../base/progress';
import { foldersFor } from './kinds';
import { openRestore } from './restore';
import type { Deployment, StorageConfig } from './deployment';

export interface DrillResult {
  storage: string;
  stamp: string;
  ok: boolean;
  bytes: number;
  transactions: number;
  blobRecords: number;
  blobFiles: number;
  missingBlobs: string[];
  indexOk: boolean;
  indexProblem?: string;
  restoreSeconds: number;
  checkSeconds: number;
  problems: string[];
}

export interface DrillOptions extends OperationOptions {
  /** Drill every backed-up point in time, not just the newest. */
  all?: boolean;
  /** Where to restore (default: a temp folder, removed afterwards). */
  workDir?: string;
  /**
   * Where a storage's backups are, and which stamps to drill (default: its
   * regular backups, the newest or, with `all`, every one). A drill of a
   * remote (remote/pull.ts, drillRemote) gives what it fetched into the cache.
   */
  from?: (s: StorageConfig) => { repo: string; blobs?: string; stamps: string[] };
}

export async function drillDeployment(dep: Deployment, opts: DrillOptions = {}): Promise<DrillResult[]> {
  const results: DrillResult[] = [];
  const work = opts.workDir ?? (await fileLayer.mkdtemp(path.join(os.tmpdir(), 'plone-backup-drill-')));
  try {
    for (const s of dep.storages) {
      const from = opts.from?.(s);
      const repo = from?.repo ?? foldersFor(s, 'backup').repo;
      let stamps: string[] = from?.stamps ?? [];
      if (!from)
        try {
          const { files } = await listRepository(repo);
          stamps = opts.all
            ? allChains(files)
                .flat()
                .map((f) => f.stamp)
            : files.length
              ? [files[files.length - 1]!.stamp]
              : [];
        } catch (e) {
          if (PloneBackupError.is(e, 'REPO_MISSING')) stamps = [];
          else throw e;
        }
      if (stamps.length === 0) {
        results.push(emptyResult(s.name, `no backup in ${repo}`));
        continue;
      }
      for (const stamp of stamps) {
        checkAbort(opts.signal);
        results.push(await drillOne(dep, s.name, stamp, work, opts));
      }
    }
  } finally {
    if (!opts.workDir) await fileLayer.rm(work, { recursive: true, force: true });
  }
  return results;
}

function emptyResult(storage: string, problem: string): DrillResult {
  return {
    storage,
    stamp: '',
    ok: false,
    bytes: 0,
    transactions: 0,
    blobRecords: 0,
    blobFiles: 0,
    missingBlobs: [],
    indexOk: false,
    restoreSeconds: 0,
    checkSeconds: 0,
    problems: [problem],
  };
}

async function drillOne(dep: Deployment, storage: string, stamp: string, work: string, opts: DrillOptions): Promise<DrillResult> {
  const s = dep.storages.find((x) => x.name === storage)!;
  const dir = path.join(work, `${storage}-${stamp}`);
  await fileLayer.mkdir(dir, { recursive: true });
  // A one-storage deployment pointing into the drill folder, restored like the real thing.
  const target = {
    ...dep,
    storages: [{ ...s, file: path.join(dir, 'filestorage', path.basename(s.file)), blobDir: s.blobDir ? path.join(dir, path.basename(s.blobDir)) : undefined }],
  };
  const { repo, blobs } = opts.from?.(s) ?? foldersFor(s, 'backup');
  const source = () => ({ type: 'repository' as const, repo, blobs: s.blobDir ? blobs : undefined });
  const res = emptyResult(storage, '');
  res.problems = [];
  res.stamp = stamp;
  const t0 = Date.now();
  try {
    const session = await openRestore(target, { date: stamp, source, incremental: false, keepOld: false, blobMode: 'copy', force: true, signal: opts.signal });
    try {
      for (const p of session.plans) if (p.mismatch) res.problems.push(p.mismatch);
      await session.run();
    } finally {
      await session.close();
    }
  } catch (e) {
    res.restoreSeconds = (Date.now() - t0) / 1000;
    res.problems.push(`the restore failed: ${(e as Error).message}`);
    return res;
  }
  res.restoreSeconds = (Date.now() - t0) / 1000;
  const t1 = Date.now();
  const file = target.storages[0]!.file;
  const st = await openFileStorage(file);
  const index = new FsIndex();
  const blobsSeen = new BlobCollector();
  try {
    const sc = await scanRange(st, 4, st.size, { fileSize: st.size, signal: opts.signal }, (t) => {
      for (const r of t.records) {
        index.set(r.oid, r.pos);
        blobsSeen.add(r);
      }
    });
    res.transactions = sc.txnCount;
    res.bytes = st.size;
    if (sc.end !== st.size) res.problems.push(`the restored Data.fs has ${st.size - sc.end} bytes after its last complete transaction`);
    const refs = await blobsSeen.finish(st, 4);
    res.blobRecords = refs.length;
    try {
      const saved = await readIndexFile(`${file}.index`);
      const same = saved.pos === sc.end && saved.index.size === index.size && [...index.map].every(([k, v]) => saved.index.map.get(k) === v);
      res.indexOk = same;
      if (!same) res.indexProblem = 'the restored index does not match the data';
    } catch (e) {
      res.indexOk = false;
      res.indexProblem = (e as Error).message;
    }
    if (res.indexProblem) res.problems.push(res.indexProblem);
    const blobDir = target.storages[0]!.blobDir;
    if (blobDir) {
      const { layout } = await readLayout(blobDir);
      const rels = new Set(refs.map((r) => blobRelPath(r.oid, r.tid, layout)));
      res.blobFiles = rels.size;
      for (const rel of rels) {
        if (!(await fsp.stat(path.join(blobDir, rel)).catch(() => undefined))) res.missingBlobs.push(rel);
      }
      if (res.missingBlobs.length) res.problems.push(`${res.missingBlobs.length} blob file(s) referenced by the restored data are missing`);
    }
  } catch (e) {
    res.problems.push(`the restored data cannot be read: ${(e as Error).message}`);
  } finally {
    await st.fh.close();
    await fileLayer.rm(dir, { recursive: true, force: true });
  }
  res.checkSeconds = (Date.now() - t1) / 1000;
  res.ok = res.problems.length === 0;
  return res;
}

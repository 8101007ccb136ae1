/**
 * Sample deployments (buildout layout) written with the engine's SampleSite,
 * closed by the test's cleanup hooks whatever the test's outcome.
 */
import * as path from 'node:path';
import * as fs from 'node:fs';
import { SampleSite, generationFiles, listGenerations, openRestore, poolDir, type Deployment, type RestoreOptions, type StoragePlan } from '../../src/engine/internal';

type SampleOptions = Parameters<typeof SampleSite.create>[0];
import { blobFiles, content, type TestHooks } from './fs';

export interface Site {
  root: string;
  varDir: string;
  file: string;
  blobDir: string;
  site: SampleSite;
}

/**
 * SampleSite.create (or .open with `open: true`), closed in t.after. Closing
 * it again is harmless, so a test may still close it early (to back up a
 * quiet site, say).
 */
export async function sampleSite(t: TestHooks, opts: SampleOptions & { open?: boolean }): Promise<SampleSite> {
  const site = opts.open ? await SampleSite.open(opts) : await SampleSite.create(opts);
  t.after(() => site.close());
  return site;
}

/** A buildout-layout deployment: var/filestorage/Data.fs and var/blobstorage, with some documents and files. */
export async function makeSite(t: TestHooks, root: string, opts: { docs?: number; files?: number; name?: string } = {}): Promise<Site> {
  const varDir = path.join(root, 'var');
  const name = opts.name ?? 'main';
  const file = path.join(varDir, 'filestorage', name === 'main' ? 'Data.fs' : `${name}.fs`);
  const blobDir = path.join(varDir, name === 'main' ? 'blobstorage' : `blobstorage_${name}`);
  const site = await sampleSite(t, { file, blobDir });
  for (let i = 0; i < (opts.docs ?? 2); i++) await site.addDocument(`${name} document ${i}`);
  for (let i = 0; i < (opts.files ?? 2); i++) await site.uploadFile(`${name}-file${i}.pdf`, content(`${name}-${i}`, 3000 + i * 100));
  return { root, varDir, file, blobDir, site };
}

/** The plan a restore with `opts` would run now (a session opened, its plans read, closed again). */
export async function planOf(dep: Deployment, opts: RestoreOptions = {}): Promise<StoragePlan[]> {
  const session = await openRestore(dep, opts);
  try {
    return session.plans;
  } finally {
    await session.close();
  }
}

/**
 * The blob files (relative paths, sorted) a blob generation holds, whatever
 * its kind: a pool generation's (`<base>.<stamp>.json`: its manifest with its
 * parents', each file checked to be in the pool), or a tree's
 * (`<base>.<stamp>/<base>/…`).
 */
export async function generationBlobFiles(gen: string): Promise<string[]> {
  const name = path.basename(gen);
  const base = name.slice(0, name.indexOf('.'));
  if (!name.endsWith('.json')) return blobFiles(path.join(gen, base));
  const g = (await listGenerations(path.dirname(gen), base)).find((x) => x.path === gen);
  if (!g) throw new Error(`${gen} is no generation`);
  const rels = [...(await generationFiles(g, 'bushy')).keys()].sort();
  const pool = poolDir(path.dirname(gen), base);
  for (const r of rels) if (!fs.lstatSync(path.join(pool, r)).isFile()) throw new Error(`${r} is not in the pool`);
  return rels;
}

/** The file `rel` of a blob generation (in its tree, or in the pool). */
export function generationFile(gen: string, rel: string): string {
  const name = path.basename(gen);
  const base = name.slice(0, name.indexOf('.'));
  return name.endsWith('.json') ? path.join(poolDir(path.dirname(gen), base), rel) : path.join(gen, base, rel);
}

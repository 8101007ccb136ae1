// What every esbuild bundle of the engine shares (scripts/build.mjs, the
// benchmarks' bundles): the engine's worker thread code, built into the bundle
// as a string (src/engine/zodb/worker.ts reads PLONE_BACKUP_WORKER_SOURCE), so a
// bundle starts its worker with no file beside it. That is what lets the
// standalone executable (scripts/dist.mjs: one file, nothing beside it) scan
// and index on two threads like the extension and the npm package.
import { build } from 'esbuild';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

let source;
/** esbuild's `define` that puts the worker's code (src/engine/zodb/scanworker.ts, bundled) into a bundle. */
export async function workerDefine() {
  source ??= build({
    entryPoints: [path.join(ROOT, 'src', 'engine', 'zodb', 'scanworker.ts')],
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    write: false,
    logLevel: 'warning',
  }).then((r) => r.outputFiles[0].text);
  return { PLONE_BACKUP_WORKER_SOURCE: JSON.stringify(await source) };
}

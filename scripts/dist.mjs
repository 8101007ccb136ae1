// `npm run dist`: the CLI as one Linux executable that runs where no Node is
// installed (Node's single-executable applications). The CLI bundle
// (dist/cli.js from scripts/build.mjs: one CommonJS file that requires only
// Node's built-in modules; its md5 worker is evaluated from a string, gzip runs
// on zlib's own threads) becomes a preparation blob (`node
// --experimental-sea-config sea-config.json`), which postject injects into a
// copy of the node running this script, its symbols stripped when `strip` is
// there. Output: dist/plone-backup-linux-<arch>, the arch of that node (x64,
// or arm64 when run on an arm64 machine). The new executable must answer
// --version as the bundle does, else nothing is left in dist/.
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

class DistError extends Error {}
const fail = (why) => {
  throw new DistError(why);
};

/** Runs a build step; undefined when its program is not installed. */
function run(cmd, args, what) {
  const r = spawnSync(cmd, args, { cwd: ROOT, encoding: 'utf8' });
  if (r.error?.code === 'ENOENT') return undefined;
  if (r.status !== 0) fail(`${what} failed (${r.error?.message ?? `exit ${r.status ?? r.signal}`}):\n${r.stdout}${r.stderr}`);
  return r;
}

function dist() {
  if (process.platform !== 'linux') fail(`it builds Linux executables only, and this is ${process.platform}.`);
  const bundle = join(ROOT, 'dist', 'cli.js');
  if (!existsSync(bundle)) fail('dist/cli.js is missing: run npm run build first.');
  // A node built with a shared libnode (some distributions' packages) has no fuse to flip.
  if (!readFileSync(process.execPath).includes(`${FUSE}:0`)) {
    fail(`${process.execPath} cannot become a single executable (it has no SEA fuse): run it with an official Node build.`);
  }
  const out = join(ROOT, 'dist', `plone-backup-linux-${process.arch}`);
  const tmp = `${out}.tmp-${process.pid}`;
  // sea-config.json with this run's own blob, so two builds at once never share one.
  const config = `${tmp}.json`;
  const blob = `${tmp}.blob`;
  try {
    writeFileSync(config, JSON.stringify({ ...JSON.parse(readFileSync(join(ROOT, 'sea-config.json'), 'utf8')), output: blob }));
    run(process.execPath, ['--experimental-sea-config', config], 'making the preparation blob');
    copyFileSync(process.execPath, tmp);
    chmodSync(tmp, 0o755);
    // Only symbols and debug sections go (about 12 of node's 99 MB); without strip, all is kept.
    const stripped = run('strip', ['--strip-all', tmp], 'strip') !== undefined;
    // postject prints notes about node's sections on stderr: shown only when it fails.
    const postject = createRequire(import.meta.url).resolve('postject/dist/cli.js');
    run(process.execPath, [postject, tmp, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', FUSE], 'postject');
    const want = run(process.execPath, [bundle, '--version'], 'dist/cli.js --version').stdout;
    const got = spawnSync(tmp, ['--version'], { encoding: 'utf8', env: { PATH: '/nonexistent' } });
    if (got.status !== 0 || got.stdout !== want) {
      fail(`the executable answered --version with ${JSON.stringify(got.stdout + got.stderr)} (exit ${got.status ?? got.signal}), not ${JSON.stringify(want)}.`);
    }
    renameSync(tmp, out);
    const mb = (statSync(out).size / 1e6).toFixed(1);
    process.stdout.write(`${out.slice(ROOT.length + 1)}: ${mb} MB, node ${process.version}${stripped ? ', stripped' : ''}\n`);
  } finally {
    for (const f of [tmp, config, blob]) rmSync(f, { force: true });
  }
}

try {
  dist();
} catch (e) {
  if (!(e instanceof DistError)) throw e;
  process.stderr.write(`npm run dist: ${e.message}\n`);
  process.exitCode = 1;
}

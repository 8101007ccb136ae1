// Bundles the CLI and the extension with esbuild. `vscode` stays external: the
// extension host provides it. The engine is bundled into both.
import { build } from 'esbuild';
import { existsSync, chmodSync } from 'node:fs';
import { workerDefine } from './bundle.mjs';

const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  sourcemap: true,
  logLevel: 'warning',
  // The engine's worker thread code, as a string (scripts/bundle.mjs).
  define: await workerDefine(),
};

await build({
  ...common,
  entryPoints: ['src/cli/main.ts'],
  outfile: 'dist/cli.js',
  banner: { js: '#!/usr/bin/env node' },
});
chmodSync('dist/cli.js', 0o755);

if (existsSync('src/extension/extension.ts')) {
  await build({
    ...common,
    entryPoints: ['src/extension/extension.ts'],
    outfile: 'dist/extension.js',
    external: ['vscode'],
    // The map ships in the .vsix to turn stack traces into source lines; it
    // names the sources but does not carry them.
    sourcesContent: false,
  });
}

/** Where things are: the repository root, the fixtures and the built artifacts the tests run. */
import * as path from 'node:path';

/** The repository root (this file compiles to out/test/support/paths.js). */
export const ROOT = path.resolve(__dirname, '..', '..', '..');
/** The compiled engine (npm run pretest), for scripts run in another process. */
export const ENGINE = path.join(ROOT, 'out', 'src', 'engine', 'internal.js');
/** The CLI bundle (npm run build). */
export const CLI = path.join(ROOT, 'dist', 'cli.js');
/** The one writer process (test/support/writer-process.ts, compiled). */
export const WRITER_PROCESS = path.join(ROOT, 'out', 'test', 'support', 'writer-process.js');
export const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'zodb');
export const HISTORY = path.join(FIXTURES, 'history');
export const STATES = path.join(HISTORY, 'states');
export const FIXTURE_REPO = path.join(HISTORY, 'repository');
export const FIXTURE_REPO_GZ = path.join(HISTORY, 'repository-gzip');

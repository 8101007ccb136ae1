/**
 * Everything the engine's modules export, for this repository's own tests,
 * benchmarks and tools, which reach into internals (fault injection through
 * `fileLayer`, format encoders, retention). Not an API: library users take
 * `src/engine/index.ts`, whose names are kept stable.
 */
export * from './archive/incremental';
export * from './archive/tar';
export * from './base/errors';
export * from './base/gzip';
export * from './base/io';
export * from './base/keep';
export * from './base/lock';
export * from './base/progress';
export * from './base/streams';
export * from './base/wording';
export * from './deploy/backup';
export * from './deploy/blobgen';
export * from './deploy/blobpool';
export * from './deploy/check';
export * from './deploy/livescan';
export * from './deploy/blobfix';
export * from './deploy/deployment';
export { readBuildout, RECIPE_OPTIONS, BUILDOUT_CAPS, recipeBool, isBackupRecipe, parseBuildoutText } from './deploy/buildout';
export type { RecipePart, RecipeOptions, RecipeLocations, RecipeScripts, ConfigWarning } from './deploy/buildout';
export * from './deploy/hooks';
export * from './deploy/kept';
export * from './deploy/scripts';
export * from './deploy/drill';
export * from './deploy/kinds';
export * from './deploy/list';
export * from './deploy/owners';
export * from './deploy/paths';
export * from './deploy/prune';
export * from './deploy/restore';
export * from './deploy/schedule';
export * from './deploy/runlog';
export * from './deploy/status';
export * from './deploy/site';
export * from './deploy/zconfig';
export * from './repozo/backup';
export * from './repozo/pieceinfo';
export * from './repozo/recover';
export * from './repozo/repository';
export * from './repozo/verify';
export * from './zodb/blobdir';
export * from './zodb/blobrefs';
export * from './zodb/scanworker';
export * from './zodb/indexscan';
export { engineWorker, type EngineWorker } from './zodb/worker';
export * from './zodb/filestorage';
export * from './zodb/fsindex';
export * from './zodb/recordscan';
export * from './zodb/storageindex';
export * from './zodb/fswriter';
export * from './zodb/pickle';
export * from './zodb/sample';
export * from './zodb/tid';
export * from './remote/target';
export * from './remote/s3';
export * from './remote/layout';
export * from './remote/push';
export * from './remote/pull';
export * from './remote/crypt';
export * from './remote/lock';
export * from './remote/forget';

/**
 * Plone Backup's engine as a library: the public names, kept stable. Pure
 * Node, no vscode import. The CLI and the extension use only these.
 *
 *   base/     errors, progress, the repository lock
 *   zodb/     ZODB's formats: FileStorage, its index, tids, the blob directory
 *   repozo/   repozo's repository and its operations: backup, recover, verify
 *   archive/  tar archives of blob trees
 *   deploy/   deployments: discovery, backup, restore, list, check, drill, delete
 *
 * The repository's own tests and tools reach internals through `./internal`.
 */

// Errors, progress, wording
export { PloneBackupError, toPloneBackupError, isAbort } from './base/errors';
export type { ErrorCode, ErrorDetails } from './base/errors';
export type { OperationOptions, Progress, ProgressFn } from './base/progress';
export { humanBytes, plural, localTime, formatLocal, compactTime, zoneName, age, progressLine } from './base/wording';
export { isTempName } from './base/io';
export { DEFAULT_COMPRESS_LEVEL, MIN_COMPRESS_LEVEL, MAX_COMPRESS_LEVEL, isCompressLevel } from './base/gzip';
export { LOCK_NAME, acquireLock, isLockHeld } from './base/lock';
export type { Lock, LockOwner } from './base/lock';

// ZODB formats
export { formatStamp, parseStamp, isStamp, normalizeDateArg, localDateArg, tidToDate, dateToTid, idRepr } from './zodb/tid';
export { openFileStorage, iterateTransactions, committedEnd, MAGIC_FS21, MAGIC_FS30 } from './zodb/filestorage';
export type { OpenedStorage, TxnInfo, RecordInfo } from './zodb/filestorage';
export { FsIndex, encodeIndex, decodeIndex, readIndexFile } from './zodb/fsindex';
export type { DecodedIndex } from './zodb/fsindex';
export { blobRelPath, parseBlobRelPath, readLayout, listBlobFiles, LAYOUT_FILE } from './zodb/blobdir';
export type { BlobLayout, BlobFile } from './zodb/blobdir';
export { FileStorageWriter } from './zodb/fswriter';
export type { WriteTxn, WriteRecord, WriterOptions } from './zodb/fswriter';
export { SampleSite, writeContinuously } from './zodb/sample';
export type { SampleOptions, WriteStats } from './zodb/sample';

// repozo
export { backup } from './repozo/backup';
export type { BackupOptions, BackupResult, BackupAction } from './repozo/backup';
export { recover } from './repozo/recover';
export type { RecoverOptions, RecoverResult, RecoveredPiece } from './repozo/recover';
export { verify, verifyChain } from './repozo/verify';
export type { VerifyOptions, VerifyResult, VerifiedPiece } from './repozo/verify';
export { listRepository, findChain, allChains, readDat, parseDat, formatDatLine, datName, indexName } from './repozo/repository';
export type { RepoFile, DatLine, RepositoryListing } from './repozo/repository';
export { describeRepository, CACHE_FILE } from './repozo/pieceinfo';
export type { ChainInfo, PieceInfo } from './repozo/pieceinfo';

// Deployments
export { writeScripts, recipeScripts } from './deploy/scripts';
export { listKept, deleteKept, undoRestore, liveGenerations } from './deploy/kept';
export type { KeptState, KeptStorage, UndoResult } from './deploy/kept';
export { readBuildout } from './deploy/buildout';
export type { RecipePart, RecipeOptions, ConfigWarning } from './deploy/buildout';
export type { ScriptSpec, WrittenScripts } from './deploy/scripts';
export { discoverDeployment, findDeployments, validateDeployment, expandPath, CONFIG_FILE } from './deploy/deployment';
export type { Deployment, StorageConfig, DeploymentSettings, DiscoverOverrides, BackupDirs, BlobFormat, RecipePartInfo } from './deploy/deployment';
export { KINDS, KIND_ORDER, commandKind, restoreCommandKind, foldersFor } from './deploy/kinds';
export type { Kind, KindInfo, BackupCommand } from './deploy/kinds';
export { backupDeployment, blobSummary } from './deploy/backup';
export type { DeployBackupOptions, StorageBackupResult } from './deploy/backup';
export { openRestore, restoreDeployment, altSource } from './deploy/restore';
export type { RestoreOptions, RestoreSession, RestoreSource, StoragePlan, StorageRestoreResult } from './deploy/restore';
export { listDeployment } from './deploy/list';
export type { BlobStatus, GenerationView, GroupView, ListOptions, StorageView } from './deploy/list';
export { checkDeployment, checkBackups, checkLive, newLiveScanCache } from './deploy/check';
export type { CheckOptions, Finding, LiveScanCache, LiveScanReport, Severity } from './deploy/check';
export { LIVE_SCAN_FILE } from './deploy/livescan';
export { recentBlobs, restatRecentBlobs, blobFolders, liveStateOf, sameStateGenerations, findBlobSource } from './deploy/blobfix';
export type { RecentBlobs, RecentBlob, Restat, BlobSource, LiveState } from './deploy/blobfix';
export { drillDeployment } from './deploy/drill';
export type { DrillOptions, DrillResult } from './deploy/drill';
export { planDeletion, deleteGeneration, newestComplete, isDeletable, olderChains } from './deploy/prune';
export type { DeleteOptions, DeletionPlan, DeletionResult } from './deploy/prune';
export { siteRunning, lockSite } from './deploy/site';
export type { RunningSite, SiteLock } from './deploy/site';
export { writeTargets, outsideTargets, outsideOf, isInside, resolveReal } from './deploy/paths';
export type { WriteTarget } from './deploy/paths';
export { listGenerations, MANIFEST } from './deploy/blobgen';
export { generationFiles, poolDir, sweepPool } from './deploy/blobpool';
export type { Generation } from './deploy/blobgen';
export { recordRun, startRun, readRuns, runLogPath, verifyFailures, reportUnreadDeployment, RUN_LOG, RUN_COMMANDS } from './deploy/runlog';
export type { RunCommand, RunRecord, RunStorage, RunLogOptions, RunLogRead, RunHandle, RunResults } from './deploy/runlog';
export {
  installSchedule,
  removeSchedule,
  showSchedule,
  planSchedule,
  scheduleEnv,
  scheduleEnvOverrides,
  chooseTarget,
  describeSpec,
  scheduleLabel,
  parseEvery,
  parseWeekday,
  findCli,
  SCHEDULE_EVERY,
  SCHEDULE_TARGETS,
  SCHEDULE_ENV_VAR,
  TARGET_WORDS,
  WEEKDAYS,
} from './deploy/schedule';
export type {
  ScheduleSpec,
  ScheduleEvery,
  ScheduleTarget,
  ScheduleJob,
  ScheduleEnv,
  ScheduleInput,
  SchedulePlan,
  PlannedJob,
  InstalledSchedule,
  InstalledJob,
  ScheduleChange,
  ScheduleOptions,
  Weekday,
} from './deploy/schedule';
export { deploymentStatus, parseDuration, shortAge, prometheusText, writeStatusMetrics, STATUS_LABELS, DEFAULT_WARN_AGE, DEFAULT_CRIT_AGE } from './deploy/status';
export type { DeploymentStatus, StorageStatus, CommandStatus, StatusLevel, StatusOptions } from './deploy/status';
export { openTarget, parseRemoteUrl, DEFAULT_MULTIPART } from './remote/target';
export type { RemoteTarget, RemoteStats, TargetOptions, RemoteCredentials } from './remote/target';
export { pushDeployment, pushIndexPath } from './remote/push';
export type { PushOptions, PushResult, StoragePushResult } from './remote/push';
export { keySourceFrom, MARKER_KEY } from './remote/crypt';
export type { KeySource } from './remote/crypt';
export { forgetRemote, policyIsEmpty, selectKept } from './remote/forget';
export type { ForgetPolicy, ForgetOptions, ForgetResult, StorageForgetResult } from './remote/forget';
export { listRemote, verifyRemote, fetchForRestore, openRemoteRestore, remoteCacheDir, drillRemote, trimRemoteCache } from './remote/pull';
export type { RemoteGenerationView, RemoteStorageView, RemoteVerifyOptions, RemoteVerifyResult, FetchOptions, FetchResult, RemoteDrillOptions } from './remote/pull';

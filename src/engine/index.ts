/**
 * Plone Backup's engine, usable as a library. Pure Node: no vscode import.
 */
export * from './errors';
export * from './tid';
export * from './pickle';
export * from './fsindex';
export * from './filestorage';
export * from './blobdir';
export * from './fswriter';
export * from './repository';
export * from './progress';
export { backup, prepareBackup, killOld, cleanLeftovers, chooseStamp, rebuildIndex } from './backup';
export * from './blobrefs';
export type { BackupOptions, BackupResult, BackupAction, PreparedBackup, PrepareOptions } from './backup';
export { recover } from './recover';
export type { RecoverOptions, RecoverResult, RecoveredPiece } from './recover';
export { verify, verifyChain } from './verify';
export type { VerifyOptions, VerifyResult, VerifiedPiece } from './verify';
export { acquireLock, isLockHeld, LOCK_NAME } from './lock';
export { fileLayer, writeFileAtomic, tempPath, HashingFileWriter } from './io';
export * from './deploy';
export * from './pieceinfo';
export { SampleSite, objectPickle } from './sample';

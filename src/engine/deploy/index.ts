/** Deployments: several storages, blob generations, restore to a point in time, check and drill. */
export * from './deployment';
export * from './zconfig';
export * from './blobgen';
export * from './owners';
export * from './tar';
export * from './site';
export * from './backup';
export * from './restore';
export * from './list';
export * from './check';
export * from './drill';
export * from './prune';
export * from './paths';

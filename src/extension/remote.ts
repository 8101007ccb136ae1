/**
 * The Remote section of the Backups view (issue 12): which remote a deployment
 * pushes to (the setting `ploneBackup.remote.url`, else plone-backup.json's
 * `remote.url`; the endpoint likewise), the credentials the user stored for it
 * in VS Code's SecretStorage, and the remote's generations, listed only when
 * the section is expanded, kept in memory until Refresh (or a push, or new
 * credentials), and a failure shown as one item saying what to do.
 *
 * Credentials: with none stored, the engine uses the AWS SDK's default chain
 * (AWS_ACCESS_KEY_ID…, AWS_PROFILE and ~/.aws) as the CLI does. Stored ones
 * (Set Remote Credentials…) are kept per remote (its URL and endpoint), so a
 * workspace naming another bucket or server never gets them, and are handed
 * to the engine explicitly (openTarget's `credentials`), never through the
 * extension host's environment, which every extension shares, and never in
 * settings.json. The passphrase of an encrypted remote is kept the same way.
 *
 * Trust: a workspace can be someone else's. Pushing backups (password hashes)
 * to a bucket it names is exfiltration, restoring from it tampering, and even
 * listing sends the user's signed requests to a server it names: in an
 * untrusted workspace the section says so and nothing is sent; the settings
 * are restrictedConfigurations (package.json), read here from the user's own
 * settings only.
 */

import * as vscode from 'vscode';
import {
  KIND_ORDER,
  PloneBackupError,
  keySourceFrom,
  listRemote,
  openTarget,
  parseRemoteUrl,
  toPloneBackupError,
  type KeySource,
  type Kind,
  type RemoteCredentials,
  type RemoteGenerationView,
  type RemoteStorageView,
  type RemoteTarget,
} from '../engine';
import { CONFIG_SECTION } from './commands';
import type { Entry } from './model';

/** The settings an untrusted workspace may not set (also in package.json's restrictedConfigurations). */
export const REMOTE_SETTINGS = ['remote.url', 'remote.endpoint'];

/** The remote a deployment uses, and where that was said. */
export interface RemoteConfigured {
  url: string;
  endpoint?: string;
  /** `setting`: ploneBackup.remote.url; `config`: plone-backup.json's remote. */
  from: 'setting' | 'config';
}

/** What Set Remote Credentials… stores for one remote. */
export interface StoredCredentials {
  accessKeyId?: string;
  secretAccessKey?: string;
  /** Temporary credentials (STS: an assumed role, SSO): the session token that goes with the key. */
  sessionToken?: string;
  passphrase?: string;
}

/** Remote generations the section shows (per kind) before one row for the rest; the listing reads no more manifests than that. */
export const REMOTE_SHOWN = 50;

function setting(entry: Entry, key: string, trusted: boolean): string | undefined {
  const i = vscode.workspace.getConfiguration(CONFIG_SECTION, entry.folder.uri).inspect<string>(key);
  // Untrusted: the user's own settings only (restrictedConfigurations).
  const v = trusted ? (i?.workspaceFolderValue ?? i?.workspaceValue ?? i?.globalValue) : i?.globalValue;
  return typeof v === 'string' && v.trim() !== '' ? v.trim() : undefined;
}

/** The remote of an entry: the settings over plone-backup.json's `remote`; undefined when none is configured. */
export function remoteOf(entry: Entry, trusted: boolean): RemoteConfigured | undefined {
  if (!entry.dep) return undefined;
  const url = setting(entry, 'remote.url', trusted);
  const own = entry.dep.remote;
  const endpoint = setting(entry, 'remote.endpoint', trusted) ?? own?.endpoint;
  if (url) return { url, endpoint, from: 'setting' };
  if (own) return { url: own.url, endpoint, from: 'config' };
  return undefined;
}

/** Where a remote's stored credentials are kept: one secret per URL and endpoint. */
function secretKey(r: RemoteConfigured): string {
  return `ploneBackup.remote ${JSON.stringify([r.url, r.endpoint ?? ''])}`;
}

const MAX_SECRET = 16 << 10;

/** The credentials stored in VS Code's SecretStorage, per remote. */
export class RemoteSecrets {
  constructor(private readonly secrets: vscode.SecretStorage) {}

  get onDidChange(): vscode.Event<vscode.SecretStorageChangeEvent> {
    return this.secrets.onDidChange;
  }

  async get(r: RemoteConfigured): Promise<StoredCredentials | undefined> {
    const raw = await this.secrets.get(secretKey(r));
    if (!raw || raw.length > MAX_SECRET) return undefined;
    try {
      const o = JSON.parse(raw) as Record<string, unknown>;
      const s = (k: string) => (typeof o[k] === 'string' && o[k] !== '' ? (o[k] as string) : undefined);
      const out: StoredCredentials = { accessKeyId: s('accessKeyId'), secretAccessKey: s('secretAccessKey'), sessionToken: s('sessionToken'), passphrase: s('passphrase') };
      return out.accessKeyId || out.passphrase ? out : undefined;
    } catch {
      return undefined;
    }
  }

  async set(r: RemoteConfigured, c: StoredCredentials): Promise<void> {
    await this.secrets.store(secretKey(r), JSON.stringify(c));
  }

  async delete(r: RemoteConfigured): Promise<void> {
    await this.secrets.delete(secretKey(r));
  }

  isKey(key: string, r: RemoteConfigured): boolean {
    return key === secretKey(r);
  }
}

/** How a run authenticates, in words (never a secret): for tooltips and messages. */
export function credentialsWord(c: StoredCredentials | undefined): string {
  if (c?.accessKeyId)
    return `the ${c.sessionToken ? 'temporary ' : ''}access key ${c.accessKeyId.slice(0, 4)}… stored in VS Code${c.sessionToken ? ' with its session token' : ''}`;
  return 'the AWS profile or environment (AWS_PROFILE, ~/.aws, AWS_ACCESS_KEY_ID)';
}

/**
 * Opens the remote with the stored credentials and the key: the
 * configuration's key file for its own remote, else the stored passphrase,
 * else the variable remote.passphraseEnv names or PLONE_BACKUP_PASSPHRASE.
 */
export async function openRemote(
  entry: Entry,
  r: RemoteConfigured,
  stored: StoredCredentials | undefined,
  o: { create?: boolean; signal?: AbortSignal } = {},
): Promise<RemoteTarget> {
  const own = entry.dep?.remote && entry.dep.remote.url === r.url ? entry.dep.remote : undefined;
  let key: KeySource | undefined;
  if (own?.keyFile) key = keySourceFrom({ configKeyFile: own.keyFile });
  else if (stored?.passphrase) key = { passphrase: stored.passphrase, via: 'the passphrase stored by Set Remote Credentials…' };
  else key = keySourceFrom({ passphraseEnv: own?.passphraseEnv });
  const credentials: RemoteCredentials | undefined =
    stored?.accessKeyId && stored.secretAccessKey
      ? { accessKeyId: stored.accessKeyId, secretAccessKey: stored.secretAccessKey, ...(stored.sessionToken ? { sessionToken: stored.sessionToken } : {}) }
      : undefined;
  return openTarget(r.url, { endpoint: r.endpoint, key, credentials, create: o.create, signal: o.signal });
}

/** What a failure to reach or read the remote asks of the user: one short line, and the command that helps. */
export function whatToDo(err: PloneBackupError): { label: string; command?: string } {
  const text = `${err.message} ${err.hint ?? ''}`;
  if (err.code === 'REMOTE_KEY' && /is not encrypted|unencrypted/.test(err.message))
    return { label: 'The remote is not encrypted, and a key is set for it: remove the passphrase (Set Remote Credentials…)', command: 'ploneBackup.setRemoteCredentials' };
  if (err.code === 'REMOTE_KEY') return { label: 'The remote is encrypted and the key is missing or wrong: Set Remote Credentials…', command: 'ploneBackup.setRemoteCredentials' };
  if (/CredentialsProviderError|Could not load credentials/.test(text))
    return { label: 'No credentials for this remote (none stored, none in the AWS profile or environment): Set Remote Credentials…', command: 'ploneBackup.setRemoteCredentials' };
  if (/ExpiredToken|InvalidToken|TokenRefreshRequired/.test(text))
    return { label: 'The session token has expired or is not valid: Set Remote Credentials…', command: 'ploneBackup.setRemoteCredentials' };
  if (/Check the credentials|InvalidAccessKeyId|SignatureDoesNotMatch|AccessDenied|HTTP 403/.test(text))
    return { label: 'No access with these credentials: Set Remote Credentials…', command: 'ploneBackup.setRemoteCredentials' };
  if (/cannot be reached|ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ETIMEDOUT/.test(text))
    return { label: 'The server cannot be reached: check ploneBackup.remote.endpoint', command: 'ploneBackup.openSettings' };
  if (/NoSuchBucket/.test(text)) return { label: 'The bucket does not exist: create it, or check ploneBackup.remote.url', command: 'ploneBackup.openSettings' };
  if (err.code === 'REMOTE_BAD' && /URL|bucket name|prefix|endpoint/.test(err.message))
    return { label: `${err.message} Fix ploneBackup.remote.url`, command: 'ploneBackup.openSettings' };
  return { label: err.userMessage };
}

/** One remote's listing, as the section shows it. */
export type RemoteListing =
  | { state: 'loading' }
  | { state: 'done'; views: RemoteStorageView[]; credentials: StoredCredentials | undefined }
  | { state: 'error'; error: PloneBackupError; credentials: StoredCredentials | undefined };

/** A remote generation with its storage (the storage's name, not its space) and kind. */
export interface RemoteGen {
  storage: string;
  kind: Kind;
  gen: RemoteGenerationView;
}

/** The storage a remote space belongs to (`main/snapshot` is main's snapshots: the engine's layout). */
const storageOfSpace = (space: string) => space.split('/')[0]!;

/** Generations of a listing (of one kind, when given), newest first, with their storage and kind. */
export function remoteGenerations(views: readonly RemoteStorageView[], kind?: Kind): RemoteGen[] {
  return views
    .filter((v) => kind === undefined || v.kind === kind)
    .flatMap((v) => v.generations.map((gen) => ({ storage: storageOfSpace(v.storage), kind: v.kind, gen })))
    .sort((a, b) => (a.gen.stamp < b.gen.stamp ? 1 : a.gen.stamp > b.gen.stamp ? -1 : a.storage.localeCompare(b.storage)));
}

/** Generations on the remote (of one kind) that the listing counted without reading them (listRemote's limit). */
export function remoteOlder(views: readonly RemoteStorageView[], kind?: Kind): number {
  return views.filter((v) => kind === undefined || v.kind === kind).reduce((n, v) => n + (v.older ?? 0), 0);
}

/** The kinds of backup the remote holds, in the local view's order. */
export function remoteKinds(views: readonly RemoteStorageView[]): Kind[] {
  return KIND_ORDER.filter((k) => views.some((v) => v.kind === k && (v.generations.length > 0 || (v.older ?? 0) > 0)));
}

/** Whether a listing names more than one storage (rows then say which). */
export function severalStorages(views: readonly RemoteStorageView[]): boolean {
  return new Set(views.map((v) => storageOfSpace(v.storage))).size > 1;
}

/**
 * The remote listings, per deployment: fetched when first asked for (the
 * section expanded), then kept until refreshed. A listing of another URL or
 * endpoint than the entry's remote now is stale and fetched again.
 */
export class RemoteListings implements vscode.Disposable {
  private readonly cache = new Map<string, { id: string; listing: RemoteListing; done: Promise<void> }>();
  /** Deployments whose every remote generation the user asked to see (showAll). */
  private readonly all = new Set<string>();
  private readonly emitter = new vscode.EventEmitter<void>();
  /** A listing was fetched (or failed): the section's children changed. */
  readonly onDidChange = this.emitter.event;
  private disposed = false;

  constructor(
    readonly secrets: RemoteSecrets,
    private readonly log: vscode.LogOutputChannel,
  ) {}

  private id(r: RemoteConfigured): string {
    return JSON.stringify([r.url, r.endpoint ?? '']);
  }

  /** The listing of the entry's remote, fetching it when there is none (the section shows "Loading…" meanwhile). */
  get(entry: Entry, r: RemoteConfigured): RemoteListing {
    const have = this.cache.get(entry.root);
    if (have && have.id === this.id(r)) return have.listing;
    return this.fetch(entry, r).listing;
  }

  /** The listing there is, without fetching one. */
  peek(entry: Entry, r: RemoteConfigured): RemoteListing | undefined {
    const have = this.cache.get(entry.root);
    return have && have.id === this.id(r) ? have.listing : undefined;
  }

  /** The listing, fetched now if there is none; resolves when it is there. */
  async load(entry: Entry, r: RemoteConfigured): Promise<RemoteListing> {
    this.get(entry, r);
    await this.cache.get(entry.root)!.done;
    return this.cache.get(entry.root)!.listing;
  }

  private fetch(entry: Entry, r: RemoteConfigured) {
    const slot: { id: string; listing: RemoteListing; done: Promise<void> } = { id: this.id(r), listing: { state: 'loading' }, done: Promise.resolve() };
    this.cache.set(entry.root, slot);
    slot.done = (async () => {
      let credentials: StoredCredentials | undefined;
      try {
        credentials = await this.secrets.get(r);
        parseRemoteUrl(r.url);
        const t = await openRemote(entry, r, credentials);
        try {
          // Only what the section shows: the newest manifests of each space, the rest counted
          // (every one once the user asked to see the older ones).
          const views = await listRemote(
            entry.dep!.storages.map((s) => s.name),
            t,
            { limit: this.showsAll(entry.root) ? undefined : REMOTE_SHOWN },
          );
          slot.listing = { state: 'done', views, credentials };
        } finally {
          t.close();
        }
      } catch (e) {
        const error = toPloneBackupError(e);
        this.log.warn(`${entry.root}: listing ${r.url} failed: [${error.code}] ${error.message}${error.hint ? ` (${error.hint})` : ''}`);
        slot.listing = { state: 'error', error, credentials };
      }
      if (!this.disposed && this.cache.get(entry.root) === slot) this.emitter.fire();
    })();
    return slot;
  }

  /** Whether the section shows every remote generation of the deployment, not only the newest REMOTE_SHOWN. */
  showsAll(root: string): boolean {
    return this.all.has(root);
  }

  /** The "… and N older" row clicked: the listing read again, every generation this time. */
  showAll(root: string): void {
    this.all.add(root);
    this.refresh(root);
  }

  /** Forgets the listing of one deployment (every one without a root); the section fetches it again when shown. */
  refresh(root?: string): void {
    if (root === undefined) this.cache.clear();
    else this.cache.delete(root);
    if (!this.disposed) this.emitter.fire();
  }

  dispose(): void {
    this.disposed = true;
    this.emitter.dispose();
  }
}

export const NOT_CONFIGURED_HINT =
  'Set ploneBackup.remote.url (s3://BUCKET/PREFIX or file:///FOLDER) and, for a server other than AWS, ploneBackup.remote.endpoint; or "remote": {"url": …} in plone-backup.json.';

export function notConfigured(name: string): PloneBackupError {
  return new PloneBackupError('USAGE', `No remote is configured for ${name}.`, { hint: NOT_CONFIGURED_HINT });
}

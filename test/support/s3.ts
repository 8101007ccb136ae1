/**
 * A real S3 server (Ceph RGW, ../shared/s3/start-s3.sh) for tests that do not
 * run under node:test: the extension's in-host suite (mocha, inside the
 * extension host, which must not be blocked while the server starts) and the
 * UI journeys (plain node, through out/test/support/s3.js). Started and
 * destroyed asynchronously; the ports are a free pair picked from this
 * process's own place in the range, so that runs side by side do not meet.
 * test/remote/s3support.ts wraps it for the engine's node:test files, and
 * scripts/bench-remote.mjs starts its server with it too.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { ROOT } from './paths';

const run = promisify(execFile);
const SCRIPT = process.env.START_S3 || path.resolve(ROOT, '..', 'shared', 's3', 'start-s3.sh');

export interface S3Env {
  endpoint: string;
  accessKey: string;
  secretKey: string;
  region: string;
}

export interface S3Instance {
  env: S3Env;
  admin: S3Client;
  /** A fresh bucket (created with the admin client) and a URL with a prefix in it. */
  bucket(prefix?: string): Promise<string>;
  destroy(): Promise<void>;
}

function portFree(port: number): Promise<boolean> {
  return new Promise((res) => {
    const srv = net.createServer();
    srv.once('error', () => res(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => res(true)));
  });
}

/** A port P with P+1 free too (the gateway and its monitor), from 8000 up. */
async function freePortPair(): Promise<number> {
  for (let i = 0; i < 150; i++) {
    const p = 8000 + ((process.pid + i * 7) % 150) * 2;
    if ((await portFree(p)) && (await portFree(p + 1))) return p;
  }
  throw new Error('no free port pair for the S3 server');
}

/** Starts a server with its data in a fresh temp folder (6–7 s here; the packages are installed on first use). */
export async function startS3(): Promise<S3Instance> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pb-s3-ext-'));
  const port = await freePortPair();
  let out: string;
  try {
    ({ stdout: out } = await run('bash', [SCRIPT, 'start', '--port', String(port), '--data', dataDir], { encoding: 'utf8', timeout: 300_000 }));
  } catch (e) {
    await run('bash', [SCRIPT, 'destroy', '--data', dataDir], { timeout: 120_000 }).catch(() => undefined);
    throw e;
  }
  const vars = Object.fromEntries(
    out
      .trim()
      .split('\n')
      .filter((l) => l.includes('='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1).replace(/^"|"$/g, '')]),
  ) as Record<string, string>;
  const env: S3Env = { endpoint: vars.S3_ENDPOINT!, accessKey: vars.S3_ACCESS_KEY!, secretKey: vars.S3_SECRET_KEY!, region: vars.S3_REGION || 'us-east-1' };
  const admin = new S3Client({
    endpoint: env.endpoint,
    region: env.region,
    forcePathStyle: true,
    credentials: { accessKeyId: env.accessKey, secretAccessKey: env.secretKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  let n = 0;
  return {
    env,
    admin,
    async bucket(prefix = 'sites/prod') {
      const name = `pb-ext-${process.pid}-${++n}`;
      await admin.send(new CreateBucketCommand({ Bucket: name }));
      return `s3://${name}/${prefix}`;
    },
    async destroy() {
      admin.destroy();
      await run('bash', [SCRIPT, 'destroy', '--data', dataDir], { timeout: 120_000 });
    },
  };
}

/**
 * The official plone-backend image's layout under a temp folder that stands
 * for the container's `/`: the instance's /app/etc/zope.conf, /app/var a link
 * to /data (absolute, as the image makes it), and the /data volume with its
 * filestorage/ and blobstorage/ folders (the storage itself is the caller's).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tmpDir, type TestHooks } from './fs';

/**
 * The image's zope.conf as it names the storages (the rest of it does not
 * matter here): %define INSTANCE /app, $(NAME) values the container's
 * environment fills in, the main database a <blobstorage> around a <filestorage>.
 */
export const IMAGE_ZOPE_CONF = `%define INSTANCE /app
instancehome $INSTANCE
%define CLIENTHOME $(CLIENT_HOME)
clienthome $CLIENTHOME
debug-mode $(DEBUG_MODE)
<environment>
    CHAMELEON_CACHE $INSTANCE/var/cache
</environment>
<zodb_db main>
    cache-size $(ZODB_CACHE_SIZE)
    <blobstorage>
      blob-dir $INSTANCE/var/blobstorage
      <filestorage>
        path $INSTANCE/var/filestorage/Data.fs
      </filestorage>
    </blobstorage>
    mount-point /
</zodb_db>
`;

export interface Container {
  /** What the container sees as `/`. */
  root: string;
  /** Its /data volume. */
  data: string;
  /** /data/filestorage/Data.fs (not made here). */
  file: string;
  /** /data/blobstorage. */
  blobDir: string;
}

/** The layout under a new temp folder; `link` is where /app/var points. */
export function containerRoot(t: TestHooks, opts: { zopeConf?: string; link?: string } = {}): Container {
  const root = tmpDir(t, 'pb-container-');
  const data = path.join(root, 'data');
  fs.mkdirSync(path.join(data, 'filestorage'), { recursive: true });
  fs.mkdirSync(path.join(data, 'blobstorage'));
  fs.mkdirSync(path.join(root, 'app', 'etc'), { recursive: true });
  fs.writeFileSync(path.join(root, 'app', 'etc', 'zope.conf'), opts.zopeConf ?? IMAGE_ZOPE_CONF);
  fs.symlinkSync(opts.link ?? '/data', path.join(root, 'app', 'var'));
  return { root, data, file: path.join(data, 'filestorage', 'Data.fs'), blobDir: path.join(data, 'blobstorage') };
}

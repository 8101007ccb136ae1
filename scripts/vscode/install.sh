#!/usr/bin/env bash
# Installs what the offline extension-test runner (scripts/vscode/run-offline.mjs)
# needs: a few Debian packages (headless Chromium, ripgrep, the build tools for
# code-server's native modules) and code-server into .cache/code-server/.
#
# Idempotent: a marker file makes a second run a fast no-op. Works unattended
# (CI=true, no stdin) as root; uses sudo for apt-get when not root.
#
# Environment:
#   PLONE_BACKUP_VSCODE_CACHE   install folder (default: <repo>/.cache/code-server)
#   CODE_SERVER_VERSION         default 4.100.3 (newer ones need Node 24)
#   PLONE_BACKUP_VSCODE_FORCE=1 reinstall even if the marker is present
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
version="${CODE_SERVER_VERSION:-4.100.3}"
cache="${PLONE_BACKUP_VSCODE_CACHE:-$root/.cache/code-server}"
marker="$cache/.installed"
# @vscode/ripgrep 1.15.11 (in VS Code 1.100) downloads this rg build from GitHub.
rg_pkg_version="1.15.11"
rg_version="v13.0.0-10"

log() { printf '[vscode-install] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || true)"
[ -n "$node_major" ] || die "node is not on PATH"
want_marker="code-server@$version node$node_major $(uname -m)"

# Fast path: everything already there.
if [ "${PLONE_BACKUP_VSCODE_FORCE:-}" != 1 ] && [ -f "$marker" ] \
  && [ "$(cat "$marker")" = "$want_marker" ] \
  && [ -x "$cache/node_modules/.bin/code-server" ] && [ -x /usr/bin/chromium ]; then
  exit 0
fi

case "$version" in
  4.100.*) [ "$node_major" = 20 ] || die "code-server $version needs Node 20 (found $(node -v))" ;;
esac

# ---------------------------------------------------------------- Debian packages
debs=(build-essential pkg-config python3 libkrb5-dev libx11-dev libxkbfile-dev
  libsecret-1-dev ripgrep chromium fonts-dejavu-core ca-certificates)
missing=()
for p in "${debs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  command -v apt-get >/dev/null || die "missing packages (${missing[*]}) and no apt-get"
  sudo=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || die "missing packages (${missing[*]}); run as root or install sudo"
    sudo=(sudo -n)
  fi
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -q </dev/null >&2
  "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null >&2
fi
[ -x /usr/bin/chromium ] || die "/usr/bin/chromium not found after install"
[ -x /usr/bin/rg ] || die "/usr/bin/rg not found after install"

# ---------------------------------------------------------------- code-server
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9 # one installer at a time (parallel CI jobs on one machine)
# Another process may have finished while we waited.
if [ "${PLONE_BACKUP_VSCODE_FORCE:-}" != 1 ] && [ -f "$marker" ] \
  && [ "$(cat "$marker")" = "$want_marker" ] && [ -x "$cache/node_modules/.bin/code-server" ]; then
  exit 0
fi

log "installing code-server@$version into $cache (about 1-2 minutes)"
started=$SECONDS
rm -f "$marker"
rm -rf "$cache/node_modules" "$cache/package-lock.json" "$cache/tmp"
# allowScripts: recent npm 11 reviews dependency install scripts (warns, and may
# block); code-server needs its own postinstall (which runs `npm install` in
# lib/vscode and lib/vscode/extensions) and its native modules' builds.
# Older npm ignores the field.
cat >"$cache/package.json" <<EOF
{
  "name": "plone-backup-code-server",
  "private": true,
  "description": "test-only cache, see scripts/vscode/install.sh",
  "allowScripts": {
    "code-server": true, "argon2": true, "node-pty": true, "kerberos": true,
    "native-watchdog": true, "@vscode/ripgrep": true, "@vscode/spdlog": true,
    "@vscode/deviceid": true, "@parcel/watcher": true, "esbuild": true
  }
}
EOF

# Seed @vscode/ripgrep's download cache with Debian's rg (its postinstall would fetch
# it from GitHub). It looks in \$TMPDIR/vscode-ripgrep-cache-<pkg version>/.
case "$(uname -m)" in
  x86_64) rg_target="x86_64-unknown-linux-musl" ;;
  aarch64 | arm64) rg_target="aarch64-unknown-linux-musl" ;;
  *) die "unsupported architecture $(uname -m)" ;;
esac
tmp="$cache/tmp"
mkdir -p "$tmp/vscode-ripgrep-cache-$rg_pkg_version" "$tmp/rg"
cp /usr/bin/rg "$tmp/rg/rg"
tar -czf "$tmp/vscode-ripgrep-cache-$rg_pkg_version/ripgrep-$rg_version-$rg_target.tar.gz" -C "$tmp/rg" rg

(
  cd "$cache"
  export TMPDIR="$tmp"
  export npm_config_yes=true          # node-pty's build runs `npx node-gyp`
  export npm_config_unsafe_perm=true  # code-server's postinstall checks it when root
  export npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false
  export npm_config_loglevel=warn
  npm install --no-save "code-server@$version" </dev/null >&2
)

bin="$cache/node_modules/.bin/code-server"
[ -x "$bin" ] || die "code-server binary missing after npm install"
[ -e "$cache/node_modules/code-server/lib/vscode/node_modules.asar" ] \
  || die "code-server's postinstall did not run (install scripts blocked by npm?)"
# (a first run writes a default config: keep it out of the home folder)
got="$(XDG_CONFIG_HOME="$tmp/xdg" XDG_DATA_HOME="$tmp/xdg" "$bin" --version 2>/dev/null \
  | grep -E '^[0-9]+\.[0-9]+\.[0-9]+ ' | head -n1 || true)"
case "$got" in
  "$version "*) ;;
  *) die "code-server --version gave '$got', expected $version" ;;
esac
for native in node-pty/build/Release/pty.node @vscode/spdlog/build/Release/spdlog.node; do
  [ -f "$cache/node_modules/code-server/lib/vscode/node_modules/$native" ] \
    || die "native module $native was not built"
done
rg_bin="$(find "$cache/node_modules/code-server/lib/vscode/node_modules/@vscode/ripgrep/bin" -name rg 2>/dev/null | head -n1 || true)"
[ -n "$rg_bin" ] || die "ripgrep was not installed inside code-server"
rm -rf "$tmp"
printf '%s\n' "$want_marker" >"$marker"
log "installed code-server $got in $((SECONDS - started)) s"

#!/usr/bin/env bash
# Regenerates server/web/noble.js: the audited noble primitives the
# reviewer page needs (Argon2id, BLAKE3, XChaCha20-Poly1305), bundled into
# one self-contained ES module so the page loads nothing from outside the
# conductor. Needs node and npm (registry access) and runs in a scratch
# directory: nothing but noble.js is written into the repository.
#
#   bash server/web/build-noble.sh            # rebuild noble.js
#   bash server/web/build-noble.sh --check    # rebuild in scratch, compare
#
# Bump the versions here and in VENDOR.md together.
set -euo pipefail

HASHES=2.4.0
CIPHERS=2.4.0
ESBUILD=0.28.2

web="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
scratch="$(mktemp -d "${TMPDIR:-/tmp}/noble-build.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT

cd "$scratch"
cat > package.json <<JSON
{ "name": "conductor-noble-build", "private": true, "type": "module" }
JSON
npm install --no-audit --no-fund --save-exact \
  "@noble/hashes@$HASHES" "@noble/ciphers@$CIPHERS" "esbuild@$ESBUILD" >/dev/null

cat > entry.js <<'JS'
// Only what server/web/crypto.js uses.
export { argon2idAsync } from '@noble/hashes/argon2.js';
export { blake3 } from '@noble/hashes/blake3.js';
export { xchacha20poly1305 } from '@noble/ciphers/chacha.js';
JS

banner="/*! server/web/noble.js: @noble/hashes $HASHES (argon2idAsync, blake3), @noble/ciphers $CIPHERS (xchacha20poly1305); (c) Paul Miller, MIT licence; bundled by build-noble.sh with esbuild $ESBUILD */"
./node_modules/.bin/esbuild entry.js --bundle --format=esm --platform=browser \
  --target=es2022 --minify --legal-comments=none --charset=utf8 \
  --banner:js="$banner" --outfile=noble.js --log-level=warning

if [[ "${1:-}" == "--check" ]]; then
  if cmp -s noble.js "$web/noble.js"; then
    echo "noble.js matches a fresh build"
  else
    echo "noble.js differs from a fresh build" >&2
    exit 1
  fi
else
  cp noble.js "$web/noble.js"
fi
sha256sum "$web/noble.js" | sed "s#  .*#  noble.js#"

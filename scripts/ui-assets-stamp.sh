#!/usr/bin/env bash
# cove-server embeds web/dist with rust-embed, whose proc macro reads the folder at compile time
# where cargo cannot track it: a server built before the assets existed (or changed) would keep
# serving the old ones ("UI assets not built"). Run after building web/ and before building
# cove-server: when the assets differ from those of the last build, touch the embedding module
# so cargo recompiles it. The assets' hash is kept in target/.web-dist-stamp.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
stamp="target/.web-dist-stamp"
sum="$(find web/dist -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$sum" ]; then
  touch server/src/ui.rs
  mkdir -p target
  echo "$sum" > "$stamp"
fi

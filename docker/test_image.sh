#!/usr/bin/env bash
# `make docker-test`: build the image, then inside it
#   1. leak check: the image holds no copy of the host's pip config / constraints and none of the host's own
#      CA certificates (the build got them as build secrets only), and its ENV points pip at nothing of the host's
#   2. `make test-fast` (the pytest suite minus the slow marker) on the image's /workspace and /opt/venv
#   3. a demo stage: `dvc repro data` (the demo's data stage), then scripts/score_images.py with the committed
#      pre-trained base on three of the prepared images: torch + transformers + the project, end to end
# and print one pass/fail line per step. Exit status 0 only when all passed.
#
#   docker/test_image.sh [--base BASE_IMAGE] [-t IMAGE] [--no-build]
#     --base      default: the Dockerfile's CUDA base. Where no registry is reachable: `make docker-base`, then
#                 --base localhost/debian-bookworm-base
#     -t IMAGE    default aesthetic-llm:latest for the default base, aesthetic-llm:<base name> for another base
#   LOG_DIR=dir   where the logs and summary go (default: a new /tmp/docker-test.XXXXXX)
#   DOCKER_RUN_ARGS="--gpus all"   extra `docker run` / `podman run` arguments (docker/podman only)
# The engine comes from docker/engine.sh (ENGINE, ISOLATION, STORAGE_DRIVER, HEAVY). The image's ENTRYPOINT is
# `make VENV=/opt/venv`, so the steps run with --entrypoint bash (or `buildah run`, which ignores it).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=docker/engine.sh
. "$here/engine.sh"

BASE=
IMAGE=
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --base) BASE=$2; shift 2 ;;
    -t|--image) IMAGE=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see $0 --help)" ;;
  esac
done
if [ -z "$IMAGE" ]; then
  if [ -z "$BASE" ]; then IMAGE=aesthetic-llm:latest
  else name=${BASE##*/}; name=${name//[:@]/-}; IMAGE="aesthetic-llm:${name,,}"; fi
fi
LOG_DIR=${LOG_DIR:-$(mktemp -d /tmp/docker-test.XXXXXX)}
mkdir -p "$LOG_DIR"
engine=$(detect_engine)
results=()
failed=0
record() {  # record STEP OK|FAIL DETAIL
  results+=("$(printf '%-10s %-4s %s' "$1" "$2" "$3")")
  [ "$2" = OK ] || failed=1
}

# --- build -----------------------------------------------------------------------------------------------------
if [ "$build" = 1 ]; then
  note "build log: $LOG_DIR/build.log"
  BUILD_TIME_FILE="$LOG_DIR/build_seconds" "$here/build_image.sh" -t "$IMAGE" ${BASE:+--base "$BASE"} \
    2>&1 | tee "$LOG_DIR/build.log"
  if [ "${PIPESTATUS[0]}" -ne 0 ]; then
    record build FAIL "see $LOG_DIR/build.log"
    printf '%s\n' "${results[@]}" | tee "$LOG_DIR/summary.txt"
    exit 1
  fi
  record build OK "$IMAGE in $(cat "$LOG_DIR/build_seconds") s"
fi
image_exists "$engine" "$IMAGE" || die "no image $IMAGE (build it, or drop --no-build)"

case "$engine" in
  docker) size=$(docker image inspect --format '{{.Size}}' "$IMAGE") ;;
  podman) size=$(podman "${STORAGE[@]}" image inspect --format '{{.Size}}' "$IMAGE") ;;
  buildah) size=$(buildah "${STORAGE[@]}" inspect --type image --format '{{.ImageSize}}' "$IMAGE" 2>/dev/null || echo 0) ;;
esac
human=$(numfmt --to=si --suffix=B "$size" 2>/dev/null || echo "$size B")
note "image $IMAGE: $human"

# --- how to run a command in a fresh container of the image ----------------------------------------------------
runner=$engine
if [ "$engine" = podman ] && ! podman "${STORAGE[@]}" run --rm --entrypoint true "$IMAGE" >"$LOG_DIR/podman-probe.log" 2>&1; then
  # e.g. crun on hybrid cgroups, or a sandbox that refuses setrlimit in new containers (crun and runc both)
  if command -v buildah >/dev/null 2>&1; then
    note "podman run fails here ($(tail -1 "$LOG_DIR/podman-probe.log")); running the steps with buildah run --isolation $ISOLATION"
    runner=buildah
  else
    die "podman run fails here: $(tail -1 "$LOG_DIR/podman-probe.log")"
  fi
fi
in_image() {  # in_image SCRIPT: run bash -c SCRIPT in a fresh container (working dir /workspace), then remove it
  # shellcheck disable=SC2086  # DOCKER_RUN_ARGS and HEAVY are word lists
  case "$runner" in
    docker) $HEAVY docker run --rm --ipc=host ${DOCKER_RUN_ARGS:-} --entrypoint bash "$IMAGE" -c "$1" ;;
    podman) $HEAVY podman "${STORAGE[@]}" run --rm --ipc=host ${DOCKER_RUN_ARGS:-} --entrypoint bash "$IMAGE" -c "$1" ;;
    buildah)
      local ctr rc
      ctr=$(buildah "${STORAGE[@]}" from --pull=never "$IMAGE") || return 125
      $HEAVY buildah "${STORAGE[@]}" run --isolation "$ISOLATION" --workingdir /workspace "$ctr" -- bash -c "$1"
      rc=$?
      buildah "${STORAGE[@]}" rm "$ctr" >/dev/null
      return $rc ;;
  esac
}
step() {  # step NAME SCRIPT: run it in the image, log to $LOG_DIR/NAME.log; returns its status
  note "$1: log $LOG_DIR/$1.log"
  in_image "$2" 2>&1 | tee "$LOG_DIR/$1.log"
  return "${PIPESTATUS[0]}"
}

# --- 1. leak check ---------------------------------------------------------------------------------------------
# Host side: the pip config files and constraint files (exact copies are looked for by sha256), and one base64
# line of every CA certificate the host's pip/TLS settings trust. Inside the image, certificates the image's own
# ca-certificates package also ships are public; any other host certificate found in a cert file is a leak.
PIP_BIN=${PIP_BIN:-$(command -v pip3 || command -v pip || true)}
host_files=()
for f in /etc/pip.conf /etc/xdg/pip/pip.conf "$HOME/.config/pip/pip.conf" "$HOME/.pip/pip.conf" \
         ${PIP_CONFIG_FILE:-} ${PIP_CONSTRAINT:-} /etc/xdg/pip/constraints.txt; do
  [ -s "$f" ] && host_files+=("$(readlink -f "$f")")
done
if [ -n "$PIP_BIN" ]; then
  while read -r f; do [ -s "$f" ] && host_files+=("$(readlink -f "$f")"); done < <(
    "$PIP_BIN" config list 2>/dev/null | sed -nE "s/^[^=]*\.constraint='(.*)'$/\1/p" | tr ' ' '\n')
fi
hashes=$(for f in $(printf '%s\n' "${host_files[@]}" | sort -u); do
  printf '%s %s %s\n' "$(sha256sum < "$f" | cut -c1-64)" "$(stat -c %s "$f")" "$f"; done)
cert_files=()
for f in ${PIP_CERT:-} ${REQUESTS_CA_BUNDLE:-} ${SSL_CERT_FILE:-} /etc/ssl/certs/ca-certificates.crt \
         /usr/local/share/ca-certificates/*.crt; do
  [ -s "$f" ] && cert_files+=("$f")
done
if [ -n "$PIP_BIN" ]; then
  c=$("$PIP_BIN" config list 2>/dev/null | sed -nE "s/^[^=]*\.cert='(.*)'$/\1/p" | tail -1)
  [ -z "$c" ] || [ ! -s "$c" ] || cert_files+=("$c")
fi
# the 3rd line of each PEM block: deep inside the certificate, unique to it
cert_lines=$( (for f in "${cert_files[@]}"; do cat "$f"; echo; done) \
  | awk '/-----BEGIN CERTIFICATE-----/ {n=0; next} {n++} n==3 {print}' | sort -u)
leak_script=$(cat <<'SCRIPT'
set -u
bad=0
mkdir -p /tmp/.host-leak-check && cd /tmp/.host-leak-check
printf '%s\n' "$HASHES" | sed '/^$/d' > host_hashes
printf '%s\n' "$CERT_LINES" | sed '/^$/d' > host_cert_lines
echo "host pip config/constraint files: $(wc -l < host_hashes); host CA certificates: $(wc -l < host_cert_lines)"
# (a) exact copies of the host's pip config / constraint files anywhere in the image
if [ -s host_hashes ]; then
  sizes=$(awk '{printf "%s-size %sc", (NR>1 ? " -o " : ""), $2}' host_hashes)
  find / -xdev \( $sizes \) -type f -print0 2>/dev/null | xargs -0r sha256sum > image_hashes
  while read -r h _ f; do
    if grep -q "^$h " image_hashes; then echo "LEAK: a copy of host $f: $(grep "^$h " image_hashes | cut -c67- | paste -sd' ' -)"; bad=1; fi
  done < host_hashes
fi
# (b) the host's own CAs (those the image's ca-certificates package does not ship) in any certificate file
grep -rhF -f host_cert_lines /usr/share/ca-certificates 2>/dev/null | sort -u > public_lines
grep -vxF -f public_lines host_cert_lines > host_only_lines || true
echo "host CA certificates the image's ca-certificates does not ship: $(wc -l < host_only_lines)"
if [ -s host_only_lines ]; then
  hits=$(grep -rlF -f host_only_lines / --exclude-dir={proc,sys,dev,.host-leak-check} \
           --include='*.crt' --include='*.pem' --include='*.cer' --include='*.bundle' --include='*certificates*' 2>/dev/null)
  if [ -n "$hits" ]; then echo "LEAK: host CA certificates in: $hits"; bad=1; fi
fi
# (c) no pip configuration in the image, and nothing in its ENV pointing pip/TLS at host paths
for f in /etc/pip.conf /etc/xdg/pip /root/.config/pip /root/.pip "$VENV/pip.conf"; do
  if [ -e "$f" ]; then echo "LEAK: $f exists in the image"; bad=1; fi
done
cfg=$("$VENV/bin/pip" config list 2>&1 | grep -v '^:env:' || true)
if [ -n "$cfg" ]; then echo "LEAK: pip config in the image: $cfg"; bad=1; fi
envs=$(env | grep -E '^(PIP_|REQUESTS_CA_BUNDLE|SSL_CERT_FILE|CURL_CA_BUNDLE|NODE_EXTRA_CA_CERTS)' | grep -vx 'PIP_NO_CACHE_DIR=1' || true)
if [ -n "$envs" ]; then echo "LEAK: image ENV: $envs"; bad=1; fi
if [ -n "$(ls -A /run/secrets 2>/dev/null)" ]; then echo "LEAK: /run/secrets holds $(ls -A /run/secrets)"; bad=1; fi
[ "$bad" = 0 ] && echo "leak check: clean"
exit "$bad"
SCRIPT
)
if step leak-check "HASHES='$hashes' CERT_LINES='$cert_lines'; $leak_script"; then
  record leak-check OK "no host pip config, constraints or CA certificates in the image"
else
  record leak-check FAIL "see $LOG_DIR/leak-check.log"
fi

# --- 2. make test-fast -----------------------------------------------------------------------------------------
# /workspace is the image's COPY of the repo: .git is dockerignored, which the fast tests do not need.
step test-fast 'make VENV=/opt/venv test-fast'
rc=$?
counts=$(grep -E '^(=+ )?[0-9]+ (passed|failed)|[0-9]+ (passed|failed|error)' "$LOG_DIR/test-fast.log" | tail -1 | sed -E 's/=+//g; s/^ +| +$//g')
if [ "$rc" = 0 ]; then record test-fast OK "${counts:-passed}"; else record test-fast FAIL "${counts:-exit $rc}; see $LOG_DIR/test-fast.log"; fi

# --- 3. demo stage ---------------------------------------------------------------------------------------------
# dvc needs a git repo: initialise one over the image's /workspace, as a clone would have.
demo_script=$(cat <<'SCRIPT'
set -euo pipefail
git init -q && git add -A && git -c user.name=docker-test -c user.email=docker-test@localhost commit -qm "image /workspace"
python - <<'PY'
import platform, torch, transformers
print(f"python {platform.python_version()}  torch {torch.__version__} (cuda {torch.version.cuda}, available: {torch.cuda.is_available()})  transformers {transformers.__version__}")
PY
start=$(date +%s)
dvc repro data
echo "dvc repro data: $(( $(date +%s) - start )) s, $(find data/prepared -name '*.png' | wc -l) images"
start=$(date +%s)
python scripts/score_images.py --model pretrained/tiny-qwen2vl-base --max-new-tokens 16 --critique \
  $(find data/prepared/images/test -name '*.png' | sort | head -3) | tee /tmp/scores.tsv
test "$(wc -l < /tmp/scores.tsv)" -eq 3
echo "score_images: $(( $(date +%s) - start )) s"
SCRIPT
)
if step demo "$demo_script"; then
  record demo OK "dvc repro data + score_images.py (3 images) with pretrained/tiny-qwen2vl-base"
else
  record demo FAIL "see $LOG_DIR/demo.log"
fi

{
  echo "docker-test: image $IMAGE ($human), engine $engine, steps run with $runner"
  printf '%s\n' "${results[@]}"
  echo "logs: $LOG_DIR"
} | tee "$LOG_DIR/summary.txt"
exit "$failed"

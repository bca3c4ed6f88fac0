# Sourced by docker/*.sh: which container engine to use and how to call it.
#   ENGINE=docker|podman|buildah  force one (default: docker when `docker info` reaches a daemon, else podman,
#                                 else buildah)
#   ISOLATION=chroot              podman/buildah build and run isolation. chroot needs no OCI runtime and creates
#                                 no cgroups: on hosts with hybrid cgroups (v1 controllers + an empty v2 tree) crun
#                                 cannot create containers, and where setrlimit is refused inside a new container
#                                 neither crun nor runc can
#   STORAGE_DRIVER=vfs|overlay    containers/storage driver (default: its own choice, overlay where the kernel has it)
#   HEAVY="nice -n 19 ionice -c3" prefix for the CPU/disk-heavy commands (HEAVY= to run at normal priority)
# shellcheck shell=bash

HEAVY=${HEAVY-nice -n 19 ionice -c3}
ISOLATION=${ISOLATION:-chroot}

die() { echo "error: $*" >&2; exit 2; }
note() { echo "[docker] $*" >&2; }

detect_engine() {
  if [ -n "${ENGINE:-}" ]; then
    case "$ENGINE" in docker|podman|buildah) echo "$ENGINE"; return;; esac
    die "ENGINE=$ENGINE: expected docker, podman or buildah"
  fi
  if command -v docker >/dev/null 2>&1 && timeout 20 docker info >/dev/null 2>&1; then echo docker
  elif command -v podman >/dev/null 2>&1; then echo podman
  elif command -v buildah >/dev/null 2>&1; then echo buildah
  else die "no container engine: need a running Docker daemon, or podman/buildah (apt-get install podman buildah)"
  fi
}

# Storage options for podman/buildah, as an array: "${STORAGE[@]}" (both also read STORAGE_DRIVER themselves;
# passed explicitly for the log).
STORAGE=()
[ -z "${STORAGE_DRIVER:-}" ] || STORAGE=(--storage-driver="$STORAGE_DRIVER")

storage_driver() {  # the driver podman/buildah will use
  if [ -n "${STORAGE_DRIVER:-}" ]; then echo "$STORAGE_DRIVER"; return; fi
  if command -v podman >/dev/null 2>&1; then podman info --format '{{.Store.GraphDriverName}}' 2>/dev/null && return; fi
  buildah info --format '{{index .store "GraphDriverName"}}' 2>/dev/null || echo unknown
}

image_exists() {  # image_exists ENGINE IMAGE
  case "$1" in
    docker) docker image inspect "$2" >/dev/null 2>&1 ;;
    podman) podman "${STORAGE[@]}" image exists "$2" ;;
    buildah) buildah "${STORAGE[@]}" inspect --type image "$2" >/dev/null 2>&1 ;;
  esac
}

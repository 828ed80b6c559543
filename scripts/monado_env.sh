#!/usr/bin/env bash
# Prepares and enters an environment in which the Monado OpenXR runtime runs headless
# (null compositor, simulated HMD), for the XR tests and for headless OpenXR runs.
#
#   scripts/monado_env.sh ensure        idempotent set-up (second run: a stamp check)
#   scripts/monado_env.sh run CMD...    CMD with a fresh monado-service; returns CMD's exit code
#
# Debian 13+ (or any host where monado-service already runs): Monado from the distribution.
# Debian 12: Monado's client library needs glibc >= 2.38, so CMD runs chrooted in a Debian 13
# root built by mmdebstrap into .monado-root/, with the repository and the host Python
# installation bind-mounted at their own paths so the project's one .venv works inside.
# Everything mounted for `run` lives in a private mount namespace and a private PID namespace:
# when CMD ends (or the runner is killed) the kernel drops the mounts and kills the service.
#
# Overrides: MONADO_ENV_MODE=native|chroot, MONADO_ENV_MIRROR (Debian mirror URL),
# MONADO_ENV_BINDS (extra colon-separated host paths to bind at their own path).
#
# OpenXR validation: CMD runs with the Khronos core validation layer (shipped in pyopenxr's wheel,
# .venv/.../xr/api_layer/linux_x86_64) enabled, writing to $HEADCAST_XR_VALIDATION_LOG; a run
# whose log holds a VALID_ERROR fails even if CMD succeeded (tests/conftest.py also fails the test
# that produced it). HEADCAST_XR_VALIDATION=0 turns it off.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SELF="$REPO/scripts/monado_env.sh"
STATE="$REPO/.monado-root"          # git-ignored
ROOT="$STATE/trixie"                # the finished root; only ever appears complete (rename)
STAMP_FILE=".headcast-monado-stamp"
MIRROR="${MONADO_ENV_MIRROR:-http://deb.debian.org/debian}"
# Packages of the runtime itself (libopengl0: PyOpenGL's EGL platform loads libOpenGL). xvfb and
# xauth give the GLX binding tests an X server (GLFW window + GLX context on llvmpipe); GLFW loads
# libX11 only, the other X libraries (randr, cursor, xinerama, xi) it probes for are optional but
# quieten its start-up. On the chroot path python3-venv also brings the shared libraries (libssl,
# libffi, libsqlite3, ...) that the host's pyenv Python links against.
NATIVE_PACKAGES=(monado-service libopenxr1-monado mesa-vulkan-drivers libgl1-mesa-dri libegl1
                 libegl-mesa0 libglx-mesa0 libgl1 libopengl0 xvfb xauth libxrandr2 libxcursor1
                 libxinerama1 libxi6)
ROOT_PACKAGES=("${NATIVE_PACKAGES[@]}" python3-venv ca-certificates)
# Changing the package list or the suite invalidates an existing root.
STAMP="v2 trixie ${ROOT_PACKAGES[*]}"
RUNTIME_JSON=/usr/share/openxr/1/openxr_monado.json

log() { echo "monado_env: $*" >&2; }
die() { log "$*"; exit 1; }

glibc_at_least_2_38() {
  local v
  v="$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')" || return 1
  [ -n "$v" ] || return 1
  [ "$(printf '%s\n2.38\n' "$v" | sort -V | head -1)" = "2.38" ]
}

host_mode() {
  if [ -n "${MONADO_ENV_MODE:-}" ]; then echo "$MONADO_ENV_MODE"; return; fi
  if command -v monado-service >/dev/null 2>&1 && glibc_at_least_2_38; then echo native; return; fi
  local id="" ver=""
  if [ -r /etc/os-release ]; then
    id="$(. /etc/os-release; echo "${ID:-}")"
    ver="$(. /etc/os-release; echo "${VERSION_ID:-}")"
  fi
  if [ "$id" = debian ] && [ -n "$ver" ] && [ "${ver%%.*}" -ge 13 ] 2>/dev/null; then echo native
  elif [ "$id" = debian ] && [ "$ver" = 12 ]; then echo chroot
  elif glibc_at_least_2_38; then echo native
  else echo chroot
  fi
}

need_root() { [ "$(id -u)" -eq 0 ] || die "$1 needs root (mount namespaces, chroot, apt)"; }

# ---------------------------------------------------------------------------------------- ensure

ensure_native() {
  local missing=() p
  for p in "${NATIVE_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  bash "$REPO/scripts/ensure_apt.sh" "${missing[@]}"
}

root_is_ready() { [ -f "$ROOT/$STAMP_FILE" ] && [ "$(cat "$ROOT/$STAMP_FILE")" = "$STAMP" ]; }

build_root() {
  need_root "building the Debian 13 root"
  command -v mmdebstrap >/dev/null 2>&1 || bash "$REPO/scripts/ensure_apt.sh" mmdebstrap
  mkdir -p "$STATE"
  # One builder at a time; a second `ensure` waits and then sees the stamp.
  exec 9>"$STATE/lock"
  flock 9
  root_is_ready && return 0
  # Partial builds of killed runs are never trusted: they never got renamed, so drop them.
  # mmdebstrap's own mounts lived in a private namespace, so nothing is mounted under them.
  rm -rf --one-file-system "$STATE"/build.* "$STATE"/old.*
  local tmp started
  tmp="$(mktemp -d "$STATE/build.XXXXXX")"
  rmdir "$tmp"   # mmdebstrap wants a missing or empty target
  started=$(date +%s)
  log "building Debian 13 root for Monado in $ROOT (one-off, ~1 min, ~800 MB)"
  # The private mount namespace guarantees that a killed mmdebstrap leaves no mounts behind.
  unshare --mount --propagation private -- \
    mmdebstrap --quiet --variant=apt --include="$(IFS=,; echo "${ROOT_PACKAGES[*]}")" \
      trixie "$tmp" "$MIRROR"
  # This machine's extra CA certificates (TLS-intercepting proxies) so pip/https work inside.
  if compgen -G "/usr/local/share/ca-certificates/*" >/dev/null; then
    mkdir -p "$tmp/usr/local/share/ca-certificates"
    cp -a /usr/local/share/ca-certificates/. "$tmp/usr/local/share/ca-certificates/"
    chroot "$tmp" update-ca-certificates >/dev/null
  fi
  [ -x "$tmp/usr/bin/monado-service" ] || die "root build finished without monado-service"
  [ -f "$tmp$RUNTIME_JSON" ] || die "root build finished without $RUNTIME_JSON"
  echo "$STAMP" >"$tmp/$STAMP_FILE"
  if [ -e "$ROOT" ]; then mv "$ROOT" "$(mktemp -u "$STATE/old.XXXXXX")"; fi
  mv "$tmp" "$ROOT"
  rm -rf --one-file-system "$STATE"/old.*
  log "root ready after $(( $(date +%s) - started )) s"
}

cmd_ensure() {
  case "$(host_mode)" in
    native) ensure_native ;;
    chroot) root_is_ready || build_root ;;
    *) die "unknown MONADO_ENV_MODE '$(host_mode)'" ;;
  esac
}

# ------------------------------------------------------------------------------------------- run

# Runs inside the final environment (native host, or chroot): starts the service, runs CMD,
# stops the service. Not meant to be called directly.
cmd_inner() {
  local rt svc rc=0 i
  # Short path: the socket path must fit sockaddr_un (108 bytes).
  rt="$(mktemp -d /tmp/mxr.XXXXXX)"
  chmod 700 "$rt"
  export XDG_RUNTIME_DIR="$rt"
  export HEADCAST_MONADO_LOG="$rt/monado-service.log"
  XRT_COMPOSITOR_NULL=1 SIMULATED_ENABLE=1 XRT_NO_STDIN=1 \
    monado-service >"$HEADCAST_MONADO_LOG" 2>&1 &
  svc=$!
  stop_service() {
    if kill -0 "$svc" 2>/dev/null; then
      kill -TERM "$svc" 2>/dev/null || true
      for i in $(seq 50); do kill -0 "$svc" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$svc" 2>/dev/null || true
    fi
    wait "$svc" 2>/dev/null || true
    rm -rf "$rt"
  }
  trap stop_service EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  for i in $(seq 300); do
    [ -S "$rt/monado_comp_ipc" ] && break
    kill -0 "$svc" 2>/dev/null || { tail -n 30 "$HEADCAST_MONADO_LOG" >&2; die "monado-service exited at start"; }
    sleep 0.05
  done
  [ -S "$rt/monado_comp_ipc" ] || { tail -n 30 "$HEADCAST_MONADO_LOG" >&2; die "monado-service socket did not appear in 15 s"; }
  export XR_RUNTIME_JSON="$RUNTIME_JSON"
  export EGL_PLATFORM=surfaceless
  export HEADCAST_MONADO_ENV=1
  unset DISPLAY WAYLAND_DISPLAY
  enable_validation
  "$@" || rc=$?
  if [ "$rc" -ne 0 ] && [ -s "$HEADCAST_MONADO_LOG" ]; then
    log "command failed ($rc); last lines of the monado-service log:"
    tail -n 20 "$HEADCAST_MONADO_LOG" >&2
  fi
  check_validation || { [ "$rc" -ne 0 ] || rc=1; }
  exit "$rc"
}

# The core validation layer from pyopenxr's wheel, when there is one (and not turned off).
enable_validation() {
  [ "${HEADCAST_XR_VALIDATION:-1}" != 0 ] || return 0
  local dir
  dir="$(ls -d "$REPO"/.venv/lib/python3*/site-packages/xr/api_layer/linux_x86_64 2>/dev/null | head -1)"
  if [ -z "$dir" ] || [ ! -f "$dir/XrApiLayer_core_validation.json" ]; then
    log "warning: no OpenXR core validation layer in .venv (pyopenxr); running without validation"
    return 0
  fi
  export XR_API_LAYER_PATH="$dir${XR_API_LAYER_PATH:+:$XR_API_LAYER_PATH}"
  export XR_ENABLE_API_LAYERS="XR_APILAYER_LUNARG_core_validation${XR_ENABLE_API_LAYERS:+:$XR_ENABLE_API_LAYERS}"
  export XR_CORE_VALIDATION_EXPORT_TYPE=text
  export XR_CORE_VALIDATION_FILE_NAME="$XDG_RUNTIME_DIR/xr-validation.log"
  export HEADCAST_XR_VALIDATION_LOG="$XR_CORE_VALIDATION_FILE_NAME"
  : >"$XR_CORE_VALIDATION_FILE_NAME"
}

# Fails (and shows them) when the layer reported errors. Tests that provoke one on purpose mark
# their lines by running with XR_CORE_VALIDATION_FILE_NAME pointed elsewhere.
check_validation() {
  local f="${HEADCAST_XR_VALIDATION_LOG:-}"
  [ -n "$f" ] && [ -f "$f" ] || return 0
  if grep -q "VALID_ERROR" "$f"; then
    log "OpenXR core validation reported $(grep -c VALID_ERROR "$f") error(s):"
    grep "VALID_ERROR" "$f" | head -n 20 >&2
    return 1
  fi
  log "OpenXR core validation: $(grep -c 'Core Validation Layer is initialized' "$f") instance(s), no errors"
}

run_chroot() {
  need_root "entering the Debian 13 root"
  root_is_ready || die "no Monado root yet: run 'bash scripts/monado_env.sh ensure' first"
  local binds=() pybase p cwd
  # The host Python that .venv was made from must appear at its own path inside the root.
  if [ -x "$REPO/.venv/bin/python" ]; then
    pybase="$("$REPO/.venv/bin/python" -c 'import sys; print(sys.base_prefix)')"
    case "$pybase" in
      /|/usr) log "warning: .venv is based on the system Python ($pybase), which cannot be" \
                  "bind-mounted over the Debian 13 root; make .venv from a self-contained Python (pyenv)" ;;
      *) binds+=("$pybase") ;;
    esac
  fi
  if [ -n "${MONADO_ENV_BINDS:-}" ]; then
    IFS=: read -r -a extra <<<"$MONADO_ENV_BINDS"
    binds+=("${extra[@]}")
  fi
  cwd="$PWD"
  case "$cwd" in "$REPO"|"$REPO"/*) ;; *) cwd="$REPO" ;; esac
  # pid 1 of the new PID namespace sets up the mounts and chroots; when it ends, the kernel kills
  # whatever is left in the namespace and drops the namespace's mounts with it.
  exec unshare --mount --propagation private --pid --fork --kill-child -- \
    bash -c '
      set -euo pipefail
      root=$1 repo=$2 cwd=$3 self=$4; nb=$5; shift 5
      binds=("${@:1:$nb}"); shift "$nb"
      mount -t proc proc "$root/proc"
      mount --rbind /sys "$root/sys"
      mount --rbind /dev "$root/dev"
      mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
      mkdir -p "$root$repo"; mount --bind "$repo" "$root$repo"
      for b in "${binds[@]}"; do
        [ -e "$b" ] || continue
        mkdir -p "$root$b"; mount --bind "$b" "$root$b"
        mount -o remount,bind,ro "$root$b" 2>/dev/null || true
      done
      cd "$root$cwd"
      export PATH="$PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" TMPDIR=/tmp
      chroot "$root" /bin/bash -c "cd \"\$1\" && shift && exec /bin/bash \"\$@\"" _ "$cwd" "$self" _inner "$@"
    ' _ "$ROOT" "$REPO" "$cwd" "$SELF" "${#binds[@]}" "${binds[@]}" "$@"
}

cmd_run() {
  [ $# -ge 1 ] || die "usage: $0 run CMD [ARGS...]"
  case "$(host_mode)" in
    native) cmd_inner "$@" ;;
    chroot) run_chroot "$@" ;;
    *) die "unknown MONADO_ENV_MODE '$(host_mode)'" ;;
  esac
}

case "${1:-}" in
  ensure) shift; cmd_ensure "$@" ;;
  run) shift; cmd_run "$@" ;;
  _inner) shift; cmd_inner "$@" ;;
  *) echo "usage: $0 ensure | run CMD [ARGS...]" >&2; exit 2 ;;
esac

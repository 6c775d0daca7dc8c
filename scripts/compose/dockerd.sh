#!/usr/bin/env bash
# A private Docker engine for the compose test, when no engine answers.
#
#   scripts/compose/dockerd.sh start    print `export DOCKER_HOST=...` for the engine to use (the one that answers,
#                                      else a private dockerd started here)
#   scripts/compose/dockerd.sh stop     stop the private dockerd (and its containerd) if this checkout started one
#
# The private engine: vfs storage (overlay is not available on these machines), no iptables, no bridge (containers
# use the host's network), its socket, pid file and exec-root under build/docker/ in this checkout, and its data-root
# (the images and the build cache, slow to make on vfs) in ~/.cache/streamwreck/docker/<docker version>/, shared by
# every clone on this machine, one engine at a time (a lock next to it).
set -euo pipefail
cd "$(dirname "$0")/../.."

STATE=$PWD/build/docker
SOCKET=$STATE/docker.sock
PIDFILE=$STATE/dockerd.pid
LOG=$STATE/dockerd.log
CACHE=${STREAMWRECK_CACHE:-$HOME/.cache/streamwreck}/docker
START_TIMEOUT=${DOCKERD_START_TIMEOUT:-60}
STOP_TIMEOUT=${DOCKERD_STOP_TIMEOUT:-30}
CACHE_LIMIT_GB=${STREAMWRECK_DOCKER_CACHE_GB:-40}

say() { echo "dockerd: $*" >&2; }

answers() { timeout 10 docker ${1:+--host "$1"} version --format '{{.Server.Version}}' >/dev/null 2>&1; }

running() { [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

start() {
  if [ -z "${STREAMWRECK_PRIVATE_DOCKERD:-}" ] && answers "${DOCKER_HOST:-}"; then
    say "using the engine that answers at ${DOCKER_HOST:-the default socket}"
    echo "export DOCKER_HOST=${DOCKER_HOST:-unix:///var/run/docker.sock}"
    return
  fi
  if running && answers "unix://$SOCKET"; then
    say "the private engine of this checkout is already running (pid $(cat "$PIDFILE"))"
    echo "export DOCKER_HOST=unix://$SOCKET"
    return
  fi
  command -v dockerd >/dev/null || { say "dockerd is missing: install Debian's docker.io (scripts/compose/install.sh)"; exit 2; }
  [ "$(id -u)" = 0 ] || { say "a private dockerd needs root: start Docker yourself and set DOCKER_HOST"; exit 2; }
  version=$(dockerd --version | sed -E 's/^Docker version ([^,]+),.*/\1/')
  data_root=$CACHE/$version-vfs
  mkdir -p "$STATE" "$data_root"
  exec_root=$STATE/run
  # containerd's socket lives under the exec-root: a unix socket path must stay under 108 bytes.
  if [ ${#exec_root} -gt 60 ]; then exec_root=/run/streamwreck-docker-$(echo "$PWD" | sha1sum | cut -c1-12); fi
  rm -f "$SOCKET" "$PIDFILE"
  echo "$data_root" >"$STATE/data-root"
  # flock holds the data-root's lock for as long as dockerd runs: a second engine on the same store would corrupt it.
  (
    exec 9>"$data_root.lock"
    if ! flock -n 9; then
      say "another engine is using $data_root (lock $data_root.lock): stop it first"
      exit 3
    fi
    setsid dockerd --host "unix://$SOCKET" --pidfile "$PIDFILE" --exec-root "$exec_root" --data-root "$data_root" \
      --storage-driver=vfs --iptables=false --ip-masq=false --bridge=none \
      </dev/null >"$LOG" 2>&1 &
    echo $! >"$STATE/dockerd.launch.pid"
  )
  deadline=$((SECONDS + START_TIMEOUT))
  until answers "unix://$SOCKET"; do
    if ! kill -0 "$(cat "$STATE/dockerd.launch.pid")" 2>/dev/null; then
      say "dockerd exited at start-up; its log ($LOG) ends:"; tail -n 20 "$LOG" >&2; exit 2
    fi
    if [ $SECONDS -ge $deadline ]; then
      say "dockerd did not answer within ${START_TIMEOUT}s; its log ($LOG) ends:"; tail -n 20 "$LOG" >&2; stop; exit 2
    fi
    sleep 0.5
  done
  say "started a private dockerd $version (pid $(cat "$PIDFILE"), data-root $data_root)"
  echo "export DOCKER_HOST=unix://$SOCKET"
}

stop() {
  if [ -s "$STATE/dockerd.launch.pid" ] || [ -s "$PIDFILE" ]; then stop_engine; fi
  # dockerd leaves its network namespace mounted under its exec-root (run/netns/default): a checkout holding a mount
  # cannot be removed (rm -rf fails on it), so every mount under build/docker/ goes.
  awk -v state="$STATE/" 'index($2, state) == 1 { print $2 }' /proc/mounts | sort -r | while read -r mounted; do
    umount "$mounted" 2>/dev/null || umount --lazy "$mounted" 2>/dev/null || say "could not unmount $mounted"
  done
}

stop_engine() {
  pid=$(cat "$PIDFILE" 2>/dev/null || cat "$STATE/dockerd.launch.pid")
  if kill -0 "$pid" 2>/dev/null; then
    # vfs stores every image in full, and each rebuild leaves the replaced images behind (untagged): once the store
    # passes CACHE_LIMIT_GB they are dropped. Not every time: the build stages' images are untagged too, and they are
    # the cache that makes the next build of unchanged code fast.
    data_root=$(cat "$STATE/data-root" 2>/dev/null || true)
    if [ -n "$data_root" ] && [ "$(du -s --block-size=1G "$data_root" 2>/dev/null | cut -f1)" -gt "$CACHE_LIMIT_GB" ]; then
      say "the image store passed ${CACHE_LIMIT_GB} GB: pruning untagged images (the next build starts colder)"
      timeout 300 docker --host "unix://$SOCKET" image prune --force >/dev/null 2>&1 || true
    fi
    kill -TERM "$pid"
    deadline=$((SECONDS + STOP_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then say "dockerd (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT}s: SIGKILL"; kill -KILL "$pid"; fi
    say "stopped the private dockerd (pid $pid)"
  fi
  rm -f "$PIDFILE" "$STATE/dockerd.launch.pid" "$SOCKET" "$STATE/data-root"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac

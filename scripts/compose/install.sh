#!/usr/bin/env bash
# What the compose test needs and this machine may lack: a Docker engine (Debian's docker.io: dockerd, containerd,
# runc), debootstrap (for stand-in base images), and Docker Compose v2 as a CLI plugin (install-compose.sh).
# Exit 3, with one line, when Docker cannot be installed here at all (not root and no passwordless sudo, or no
# apt-get) and no engine is reachable either; the compose test then skips with that line as its reason.
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { echo "compose-install: $*" >&2; }

missing=()
command -v docker >/dev/null || missing+=(docker.io)
command -v dockerd >/dev/null || { timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1 || missing+=(docker.io); }
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo"; else
    say "cannot install ${missing[*]}: not root and no passwordless sudo (install the Debian package(s) ${missing[*]})"
    exit 3
  fi
  command -v apt-get >/dev/null || { say "cannot install ${missing[*]}: no apt-get (install Docker yourself)"; exit 3; }
  say "installing ${missing[*]} (Debian packages)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
scripts/compose/install-compose.sh

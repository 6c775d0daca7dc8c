#!/usr/bin/env bash
# Installs, from Debian's packages, the programs streamwreck needs that the language registries cannot give.
# Usage: scripts/system-deps.sh COMMAND...   e.g. memcached java mvn node npm python-venv chromium
# Each missing command is installed when this user can (root, or sudo); otherwise one line names the package.
set -euo pipefail

package_of() {
  case "$1" in
    memcached) echo memcached ;;            # the ledger
    chromium) echo chromium ;;              # headless, for the test that opens the checker's HTML report
    java) echo openjdk-17-jre-headless ;;   # the KCL MultiLangDaemon
    mvn) echo maven ;;                      # fetches the KCL jars
    node) echo nodejs ;;                    # kinesis-local
    npm) echo npm ;;
    python-venv) echo python3-venv ;;
    *) echo "$1" ;;
  esac
}

present() {
  if [ "$1" = python-venv ]; then "${PYTHON:-python3}" -c 'import ensurepip, venv' 2>/dev/null; else command -v "$1" >/dev/null; fi
}

missing=()
for command in "$@"; do
  present "$command" || missing+=("$(package_of "$command")")
done
[ ${#missing[@]} = 0 ] && exit 0

if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo"; else
  echo "setup: missing ${missing[*]}: install the Debian package(s) ${missing[*]} (this user cannot)" >&2
  exit 2
fi
if ! command -v apt-get >/dev/null; then
  echo "setup: missing ${missing[*]}: install them with your system's package manager" >&2
  exit 2
fi
echo "setup: installing ${missing[*]} (Debian packages)"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The memcached package starts a system memcached on 127.0.0.1:11211; streamwreck starts its own on free ports.

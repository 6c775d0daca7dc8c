#!/usr/bin/env bash
# Installs the system packages streamwreck needs and the language registries cannot give: memcached.
set -euo pipefail
if command -v memcached >/dev/null; then exit 0; fi
if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
  echo "setup: memcached is missing and this user cannot install it: install the Debian package 'memcached'" >&2
  exit 2
fi
if ! command -v apt-get >/dev/null; then
  echo "setup: memcached is missing: install it with your system's package manager (package 'memcached')" >&2
  exit 2
fi
echo "setup: installing memcached (Debian package)"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends memcached >/dev/null
# The package starts a system memcached on 127.0.0.1:11211; streamwreck starts its own on free ports.

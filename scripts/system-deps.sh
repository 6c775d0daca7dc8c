#!/usr/bin/env bash
# Installs the system packages that the language registries cannot give: memcached (the ledger) and chromium
# (headless, for the test that opens the checker's HTML report).
set -euo pipefail
missing=()
command -v memcached >/dev/null || missing+=(memcached)
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} = 0 ]; then exit 0; fi
if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
  echo "setup: missing ${missing[*]} and this user cannot install them: install the Debian packages ${missing[*]}" >&2
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

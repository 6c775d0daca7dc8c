"""Fetch one dependency-free npm package as package-lock.json pins it (version, tarball, sha512), unpacked into a
folder: the LocalStack stand-in needs kinesis-local without npm. Usage: fetch_npm.py LOCKFILE NAME DEST"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import sys
import tarfile
import urllib.request
from pathlib import Path


def main(lockfile: str, name: str, dest: str) -> int:
    entry = json.loads(Path(lockfile).read_text())["packages"][f"node_modules/{name}"]
    url = entry.get("resolved") or f"https://registry.npmjs.org/{name}/-/{name}-{entry['version']}.tgz"
    with urllib.request.urlopen(url, timeout=120) as response:
        data = response.read()
    algorithm, _, expected = entry["integrity"].partition("-")
    if base64.b64encode(hashlib.new(algorithm, data).digest()).decode() != expected:
        print(f"fetch_npm: {url} does not match the lockfile's {algorithm}", file=sys.stderr)
        return 1
    target = Path(dest)
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        for member in archive.getmembers():
            parts = Path(member.name).parts[1:]  # strip npm's "package/" prefix
            if not parts or ".." in parts or not (member.isfile() or member.isdir()):
                continue
            member.name = str(Path(*parts))
            try:
                archive.extract(member, target, filter="data")
            except TypeError:  # a Python without extraction filters; the names were checked above
                archive.extract(member, target)
    print(f"fetch_npm: {name} {entry['version']} -> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

"""Lay out the `streamwreck` package for mypy as setuptools installs it: build/typecheck/streamwreck/.

pyproject.toml maps the import package `streamwreck` onto the folders the deployables live in (package-dir).
Python follows that mapping through setuptools' editable finder, but mypy cannot run import hooks, so this builds
the same tree from symbolic links (read from package-dir, so it cannot drift) and mypy reads it via `mypy_path`.
"""

from __future__ import annotations

import shutil
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(out: Path) -> None:
    mapping: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    shutil.rmtree(out, ignore_errors=True)
    for package, folder in sorted(mapping.items()):
        target = out.joinpath(*package.split("."))
        if package.count(".") == 0:  # the package itself: a real folder, its entries linked one by one
            target.mkdir(parents=True)
            for entry in (ROOT / folder).iterdir():
                if entry.name != "__pycache__":
                    (target / entry.name).symlink_to(entry)
        else:
            target.unlink(missing_ok=True)
            target.symlink_to(ROOT / folder, target_is_directory=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "build" / "typecheck")

#!/usr/bin/env python3
"""Set-up and entry points that need nothing but Python 3.11+.

    python3 tasks.py run      install into .venv (first time) and start the bot
    python3 tasks.py test     install into .venv with the dev tools and run the tests
    python3 tasks.py lint     ruff and mypy
    python3 tasks.py bench    the benchmark (see tests/bench/RESULTS.md)

Extra arguments go to the underlying command (`python3 tasks.py test -k chains`).
The install is redone only when pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def call(*args: str | Path) -> int:
    return subprocess.call([str(a) for a in args], cwd=ROOT)


def ensure_installed(*, dev: bool) -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - tell users of older Pythons plainly
        sys.exit(f"Python 3.11 or newer is needed; this is {sys.version.split()[0]}.")
    if not venv_python().exists():
        print("Creating .venv …", flush=True)
        venv.create(VENV, with_pip=True)
        call(venv_python(), "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    stamp = VENV / (".installed-dev" if dev else ".installed")
    if stamp.exists() and stamp.read_text() == digest:
        return
    print("Installing dependencies into .venv …", flush=True)
    target = ".[dev]" if dev else "."
    if call(venv_python(), "-m", "pip", "install", "--quiet", "-e", target) != 0:
        sys.exit("pip could not install the dependencies (see above).")
    stamp.write_text(digest)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"run", "test", "lint", "bench"}:
        print(__doc__)
        return 2
    command, extra = argv[0], argv[1:]
    ensure_installed(dev=command != "run")
    python = venv_python()
    if command == "run":
        return call(python, "-m", "bot", "run", *extra)
    if command == "test":
        return call(python, "-m", "pytest", *extra)
    if command == "bench":
        return call(python, "-m", "tests.bench", *extra)
    return call(python, "-m", "ruff", "check", ".") or call(python, "-m", "mypy", *extra)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

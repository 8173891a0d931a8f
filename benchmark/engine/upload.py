"""What `benchmark submit` uploads as the job's ``working_dir``: the checkout's code, nothing else.

Ray zips whatever folder it is given. A checkout also holds things that must not travel: keys
and credentials (``.env``, ``id_rsa``, ``secrets/credentials.json``), virtual environments, VCS
data, earlier runs' outputs, large blobs. So the upload is an explicit list:

* in a git checkout, the files git would commit (``git ls-files --cached --others
  --exclude-standard``: tracked, plus untracked ones ``.gitignore`` does not exclude); outside
  git, every file minus the patterns of the root's ``.gitignore`` and ``.rayignore``;
* never VCS folders, virtual environments (any folder with a ``pyvenv.cfg``), caches, build
  output, ``runs/`` or any run output (a folder with ``manifest.json`` and ``_commits/``), nor
  anything that is not a regular file (a named pipe would block the zip);
* files that look like secrets (``SECRET_PATTERNS``) stop the submission, named, before anything
  is sent: add them to ``.gitignore`` or move them out of the checkout;
* the root's ``.gitignore``/``.rayignore`` themselves stay here: Ray would apply them again to the
  uploaded copy, with its own matcher.

The list is copied into a temporary folder that Ray zips and uploads; its size is printed.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import stat
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator

EXCLUDED_DIRS = {
    ".git", ".hg", ".svn", ".venv", "venv", ".tox", ".nox", "__pycache__", ".pytest_cache", ".mypy_cache",
    ".ruff_cache", ".ipynb_checkpoints", "build", "dist", "runs", "node_modules", ".eggs",
}
EXCLUDED_FILES = ("*.pyc", "*.pyo", "*.whl", "*.egg-info")
IGNORE_FILES = (".gitignore", ".rayignore")  # applied here; shipped, Ray would apply them a second time
SECRET_PATTERNS = (
    ".env", ".env.*", "*.env", ".envrc", ".netrc", ".pgpass", ".pypirc", ".npmrc", ".git-credentials", ".htpasswd",
    "id_rsa", "id_dsa", "id_ecdsa", "id_ed25519", "*.pem", "*.key", "*.p12", "*.pfx", "*.jks", "*.keystore",
    "*.kdbx", "*.ppk", "*credentials*", "*service*account*.json", "*secret*.json", "*secret*.y*ml", "*.tfstate",
)
NOT_SECRETS = ("*.example", "*.sample", "*.template", "*.dist", "*.pub", "*.py", "*.md")  # templates, public keys, code
LARGE_UPLOAD = 25 * 2**20  # bytes: above this the submission names the biggest files


class UploadRefused(Exception):
    """The working_dir holds files that look like secrets."""


@dataclass(frozen=True)
class Upload:
    root: Path
    files: tuple[str, ...]  # POSIX paths relative to root
    sizes: tuple[int, ...]

    @property
    def size(self) -> int:
        return sum(self.sizes)

    def largest(self, count: int = 5) -> list[tuple[str, int]]:
        return sorted(zip(self.files, self.sizes), key=lambda item: -item[1])[:count]

    def describe(self) -> str:
        line = f"uploading {self.root}: {len(self.files)} files, {self.size / 2**20:.1f} MB"
        if self.size > LARGE_UPLOAD:
            biggest = ", ".join(f"{name} ({size / 2**20:.1f} MB)" for name, size in self.largest())
            line += f"\n  warning: a large upload; the biggest files: {biggest} (add them to .gitignore)"
        return line


def looks_secret(relative: str) -> bool:
    name = PurePosixPath(relative).name.lower()
    if any(fnmatch.fnmatch(name, pattern) for pattern in NOT_SECRETS):
        return False
    return any(fnmatch.fnmatch(name, pattern) for pattern in SECRET_PATTERNS)


def _git_files(root: Path) -> list[str] | None:
    """Files git would commit, or None outside a git work tree (or without git)."""
    try:
        inside = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel"],
                                capture_output=True, text=True, timeout=60)
        if inside.returncode != 0:
            return None
        listed = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                                capture_output=True, timeout=300, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return [name for name in listed.stdout.decode().split("\0") if name]


def _ignore_patterns(root: Path) -> list[str]:
    patterns = []
    for name in (".gitignore", ".rayignore"):
        path = root / name
        if path.is_file():
            patterns += [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return patterns


def _walked_files(root: Path) -> list[str]:
    """Outside git: every file below root, minus the root's .gitignore/.rayignore patterns."""
    try:
        from ray._private.thirdparty.pathspec import PathSpec  # what Ray itself matches ignore files with
    except ImportError:  # pragma: no cover - Ray is a dependency
        PathSpec = None
    patterns = _ignore_patterns(root)
    spec = PathSpec.from_lines("gitwildmatch", patterns) if PathSpec is not None and patterns else None
    found = []
    for folder, dirs, names in os.walk(root):
        relative_folder = Path(folder).relative_to(root)
        dirs[:] = [d for d in dirs if not (spec and spec.match_file(f"{(relative_folder / d).as_posix()}/"))]
        for name in names:
            relative = (relative_folder / name).as_posix()
            if not (spec and spec.match_file(relative)):
                found.append(relative)
    return found


def _run_outputs_and_venvs(root: Path, files: list[str]) -> set[str]:
    """Folders (relative) that are run outputs or virtual environments."""
    folders = set()
    for relative in files:
        path = PurePosixPath(relative)
        if path.name in ("manifest.json", "pyvenv.cfg"):
            folder = root / path.parent
            if path.name == "pyvenv.cfg" or (folder / "_commits").is_dir():
                folders.add(path.parent.as_posix())
    return folders


def collect(root: str | Path) -> Upload:
    """The files to upload from ``root`` (see module docstring); refuses secrets."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise UploadRefused(f"--working-dir {root}: not a folder")
    listed = _git_files(root)
    candidates = listed if listed is not None else _walked_files(root)
    skip = _run_outputs_and_venvs(root, candidates)
    files, sizes = [], []
    for relative in sorted(candidates):
        parts = PurePosixPath(relative).parts
        if any(part in EXCLUDED_DIRS or part.endswith(".egg-info") for part in parts[:-1]):
            continue
        if any(fnmatch.fnmatch(parts[-1], pattern) for pattern in EXCLUDED_FILES) or relative in IGNORE_FILES:
            continue
        if any(relative == folder or relative.startswith(folder + "/") for folder in skip if folder != "."):
            continue
        try:
            info = os.stat(root / relative, follow_symlinks=False)
        except OSError:
            continue  # listed by git but deleted
        if not stat.S_ISREG(info.st_mode):
            continue  # links, pipes, sockets: nothing Ray should read
        files.append(relative)
        sizes.append(info.st_size)
    secrets = [relative for relative in files if looks_secret(relative)]
    if secrets:
        shown = "\n  ".join(secrets[:20]) + (f"\n  … and {len(secrets) - 20} more" if len(secrets) > 20 else "")
        raise UploadRefused(
            f"refusing to upload {root}: these files look like secrets and would be visible to everyone who can "
            f"read the cluster's jobs:\n  {shown}\nAdd them to .gitignore (or .rayignore outside git), move them out "
            "of the folder, or submit with --working-dir pointing at a clean copy."
        )
    return Upload(root, tuple(files), tuple(sizes))


@contextmanager
def staged(upload: Upload) -> Iterator[Path]:
    """A temporary folder holding exactly the upload's files (what Ray zips), removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="benchmark-upload-") as folder:
        target = Path(folder) / upload.root.name
        for relative in upload.files:
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(upload.root / relative, destination)
        target.mkdir(exist_ok=True)
        yield target

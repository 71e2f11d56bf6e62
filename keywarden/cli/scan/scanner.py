"""Where `keywarden scan` looks: files under a path (skipping binaries, VCS internals, virtual
environments and large files), the git index (`--staged`), and every blob reachable from any ref
(`--history`). Each place is turned into text and run through the same detectors.
"""

from __future__ import annotations

import bisect
import os
import stat
import subprocess
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import IO, Any

from keywarden.cli.scan.patterns import DETECTORS, TRIGGERS, Detector, mask

ALLOW_MARKER = "keywarden:allow"  # on a line, e.g. `# keywarden:allow`: a deliberate fixture
IGNORE_FILE = ".keywardenignore"
DEFAULT_MAX_FILE_MB = 5.0
BINARY_SNIFF_BYTES = 8192
SKIPPED_DIRS = frozenset({
    ".git", ".hg", ".svn", "node_modules", ".venv", "venv", "__pycache__", ".tox", ".nox",
    ".mypy_cache", ".ruff_cache", ".pytest_cache", "site-packages",
})  # fmt: skip


class ScanError(Exception):
    """Base of the scanner's errors: the scan could not be done as asked."""


class PathNotFound(ScanError):
    """A path given to scan does not exist."""


class NotAGitRepository(ScanError):
    """`--staged` or `--history` was asked for a path outside any git work tree."""


class GitFailed(ScanError):
    """A git command failed."""


@dataclass(frozen=True)
class Finding:
    """One secret found at one place. `secret` is kept for `--revoke` and never printed."""

    detector: Detector = field(repr=False)
    path: str
    line: int
    column: int
    masked: str
    secret: str = field(repr=False, compare=False)
    origin: str = "file"  # file | staged | history
    commit: str | None = None

    @property
    def type(self) -> str:
        return self.detector.name

    @property
    def location(self) -> str:
        where = f"{self.path}:{self.line}"
        if self.commit:
            return f"{where} (commit {self.commit[:12]})"
        return f"{where} (staged)" if self.origin == "staged" else where

    def to_json(self) -> dict[str, Any]:
        """The finding without its secret."""
        return {
            "type": self.detector.name, "provider": self.detector.provider, "path": self.path,
            "line": self.line, "column": self.column, "commit": self.commit,
            "origin": self.origin, "masked": self.masked,
        }  # fmt: skip


@dataclass
class ScanStats:
    files: int = 0
    blobs: int = 0
    skipped_binary: int = 0
    skipped_large: int = 0
    skipped_ignored: int = 0


# --- text -------------------------------------------------------------------------------------


def scan_text(
    text: str, path: str, *, origin: str = "file", detectors: Iterable[Detector] = DETECTORS
) -> list[Finding]:
    """Every non-placeholder secret in `text`, except on lines carrying the allow marker."""
    if not any(trigger in text for trigger in TRIGGERS):
        return []
    line_starts: list[int] | None = None
    findings = []
    for detector in detectors:
        for match in detector.find(text):
            if line_starts is None:
                line_starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n"]
            index = bisect.bisect_right(line_starts, match.start()) - 1
            end = text.find("\n", match.end())
            if ALLOW_MARKER in text[line_starts[index] : None if end < 0 else end]:
                continue
            findings.append(Finding(
                detector=detector, path=path, line=index + 1,
                column=match.start() - line_starts[index] + 1,
                masked=mask(detector, match), secret=match.group(0), origin=origin,
            ))  # fmt: skip
    return sorted(findings, key=lambda f: (f.line, f.column))


def decode(content: bytes) -> str | None:
    """The text of a file's bytes, or None for binary content (a NUL near the start)."""
    if b"\0" in content[:BINARY_SNIFF_BYTES]:
        return None
    return content.decode("utf-8", errors="replace")


# --- ignore rules ---------------------------------------------------------------------------


@dataclass(frozen=True)
class IgnoreRules:
    """`.keywardenignore`: gitignore-style globs relative to the file's folder (no `!`).

    A pattern without `/` matches any file or folder name (`*.snap`, `fixtures`); one with `/`
    matches from the folder (`tests/data/*.txt`); a trailing `/` matches folders only.
    """

    base: Path | None = None
    patterns: tuple[tuple[str, bool, bool], ...] = ()  # (glob, anchored, folders_only)

    @classmethod
    def read(cls, folder: Path) -> IgnoreRules:
        source = folder / IGNORE_FILE
        if not source.is_file():
            return cls(base=folder)
        patterns = []
        for raw in source.read_text(encoding="utf-8", errors="replace").splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            folders_only = line.endswith("/")
            line = line.rstrip("/")
            anchored = "/" in line
            patterns.append((line.lstrip("/"), anchored, folders_only))
        return cls(base=folder, patterns=tuple(patterns))

    @classmethod
    def for_path(cls, path: Path) -> IgnoreRules:
        """The rules of the nearest `.keywardenignore` at or above `path`, up to the repo root."""
        folder = path if path.is_dir() else path.parent
        for candidate in (folder, *folder.parents):
            if (candidate / IGNORE_FILE).is_file():
                return cls.read(candidate)
            if (candidate / ".git").exists():
                break
        return cls(base=folder)

    def ignores(self, relative: str, is_folder: bool = False) -> bool:
        """Whether `relative` (posix, from `base`) or one of its folders is ignored."""
        parts = relative.split("/")
        folder_count = len(parts) if is_folder else len(parts) - 1
        for glob, anchored, folders_only in self.patterns:
            if anchored:
                candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
            else:
                candidates = parts
            if folders_only:
                candidates = candidates[:folder_count]
            if any(fnmatchcase(candidate, glob) for candidate in candidates):
                return True
        return False

    def ignores_path(self, path: Path, is_folder: bool = False) -> bool:
        if self.base is None or not self.patterns:
            return False
        try:
            relative = path.resolve().relative_to(self.base.resolve()).as_posix()
        except ValueError:
            return False
        return relative != "." and self.ignores(relative, is_folder)


# --- files on disk ----------------------------------------------------------------------------


class Scanner:
    """Runs the detectors over files, the git index or git history, counting what it looked at."""

    def __init__(
        self, max_file_mb: float = DEFAULT_MAX_FILE_MB, detectors: Iterable[Detector] = DETECTORS
    ) -> None:
        if max_file_mb <= 0:
            raise ScanError(f"--max-size-mb must be > 0, got {max_file_mb}")
        self.max_file_bytes = int(max_file_mb * 1024 * 1024)
        self.detectors = tuple(detectors)
        self.stats = ScanStats()

    def scan_paths(self, paths: Iterable[Path]) -> Iterator[Finding]:
        """Findings in each file under `paths` (a file named explicitly is always read)."""
        for root in paths:
            if not root.exists():
                raise PathNotFound(f"{root} does not exist")
            rules = IgnoreRules.for_path(root.resolve())
            if root.is_file():
                yield from self._scan_file(root)
                continue
            for folder, subfolders, files in os.walk(root):
                here = Path(folder)
                kept = []
                for name in sorted(subfolders):
                    if name in SKIPPED_DIRS or (here / name / "pyvenv.cfg").exists():
                        continue
                    if rules.ignores_path(here / name, is_folder=True):
                        self.stats.skipped_ignored += 1
                        continue
                    kept.append(name)
                subfolders[:] = kept
                for name in sorted(files):
                    if rules.ignores_path(here / name):
                        self.stats.skipped_ignored += 1
                        continue
                    yield from self._scan_file(here / name)

    def _scan_file(self, path: Path) -> Iterator[Finding]:
        try:
            info = path.lstat()
            if not stat.S_ISREG(info.st_mode):  # symlinks, fifos, devices
                return
            if info.st_size > self.max_file_bytes:
                self.stats.skipped_large += 1
                return
            content = path.read_bytes()
        except OSError:
            return  # unreadable or gone mid-walk: nothing we can report on
        text = decode(content)
        if text is None:
            self.stats.skipped_binary += 1
            return
        self.stats.files += 1
        yield from scan_text(text, display_path(path), detectors=self.detectors)

    # --- git ----------------------------------------------------------------------------------

    def scan_staged(self, paths: Iterable[Path]) -> Iterator[Finding]:
        """Findings in the staged content of files added or changed in the index under `paths`."""
        for repo, prefixes in _group_by_repository(paths).items():
            rules = IgnoreRules.read(repo.root)
            changed = repo.run("diff", "--cached", "--name-only", "--diff-filter=ACMR", "-z")
            names = [n for n in changed.decode("utf-8", "surrogateescape").split("\0") if n]
            names = [
                n for n in names
                if _under(n, prefixes) and not _vendored(n, set()) and not rules.ignores(n)
            ]  # fmt: skip
            if not names:
                continue
            staged: dict[str, str] = {}  # blob id -> path in the index
            listing = repo.run("ls-files", "--stage", "-z", "--", *names)
            for entry in listing.decode("utf-8", "surrogateescape").split("\0"):
                if entry:
                    meta, name = entry.split("\t", 1)
                    staged.setdefault(meta.split()[1], name)
            for blob, text in repo.read_blobs(staged, self.max_file_bytes, self.stats):
                yield from scan_text(text, staged[blob], origin="staged", detectors=self.detectors)

    def scan_history(self, paths: Iterable[Path]) -> Iterator[Finding]:
        """Findings in every blob reachable from any ref, each with the commit that added it."""
        for repo, prefixes in _group_by_repository(paths).items():
            rules = IgnoreRules.read(repo.root)
            reachable = list(repo.reachable_blobs(self.max_file_bytes, self.stats))
            venvs = {name.rpartition("/")[0] for _, name in reachable if _is_venv_marker(name)}
            blobs = {
                blob: name for blob, name in reachable
                if _under(name, prefixes) and not _vendored(name, venvs) and not rules.ignores(name)
            }  # fmt: skip
            for blob, text in repo.read_blobs(blobs, self.max_file_bytes, self.stats):
                findings = scan_text(text, blobs[blob], origin="history", detectors=self.detectors)
                if findings:
                    commit = repo.commit_adding(blob)
                    yield from (replace(f, commit=commit) for f in findings)


def display_path(path: Path) -> str:
    """`path` relative to the working directory when under it, else as given."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _is_venv_marker(name: str) -> bool:
    return name == "pyvenv.cfg" or name.endswith("/pyvenv.cfg")


def _vendored(name: str, venvs: set[str]) -> bool:
    """Whether a repository path is inside a skipped folder or one of the virtual envs `venvs`."""
    folders = name.split("/")[:-1]
    if any(folder in SKIPPED_DIRS for folder in folders):
        return True
    return any("/".join(folders[:i]) in venvs for i in range(len(folders) + 1))


def _under(name: str, prefixes: set[str]) -> bool:
    return "" in prefixes or any(name == p or name.startswith(p + "/") for p in prefixes)


def _group_by_repository(paths: Iterable[Path]) -> dict[GitRepository, set[str]]:
    """Each path's repository and the path inside it ("" for the whole repository)."""
    groups: dict[GitRepository, set[str]] = {}
    for path in paths:
        if not path.exists():
            raise PathNotFound(f"{path} does not exist")
        repo = GitRepository.containing(path)
        inside = path.resolve().relative_to(repo.root).as_posix()
        groups.setdefault(repo, set()).add("" if inside == "." else inside)
    return groups


@dataclass(frozen=True)
class GitRepository:
    """A git work tree, read through plumbing commands only."""

    root: Path

    @classmethod
    def containing(cls, path: Path) -> GitRepository:
        folder = path if path.is_dir() else path.parent
        try:
            found = subprocess.run(
                ["git", "-C", str(folder), "rev-parse", "--show-toplevel"],
                capture_output=True, check=True, env=_git_env(),
            )  # fmt: skip
        except FileNotFoundError:
            raise ScanError("git is not installed; --staged and --history need it") from None
        except subprocess.CalledProcessError:
            raise NotAGitRepository(f"{path} is not inside a git work tree") from None
        return cls(Path(found.stdout.decode().strip()).resolve())

    def run(self, *args: str) -> bytes:
        try:
            done = subprocess.run(
                self._command(*args), capture_output=True, check=True, env=_git_env()
            )
        except subprocess.CalledProcessError as error:
            lines = error.stderr.decode("utf-8", "replace").strip().splitlines()
            why = lines[-1] if lines else f"exit status {error.returncode}"
            raise GitFailed(f"git {args[0]} failed in {self.root}: {why}") from None
        return done.stdout

    def _command(self, *args: str) -> list[str]:
        return ["git", "-C", str(self.root), *args]

    def reachable_blobs(self, max_bytes: int, stats: ScanStats) -> Iterator[tuple[str, str]]:
        """(blob id, a path it had) for every blob reachable from any ref, at most `max_bytes`."""
        if not self.run("for-each-ref", "--count=1"):
            return  # no commits yet
        named: dict[str, str] = {}
        listing = self.run("rev-list", "--all", "--objects").decode("utf-8", "surrogateescape")
        for line in listing.splitlines():
            object_id, _, name = line.partition(" ")
            if name:  # commits and root trees have no name
                named.setdefault(object_id, name)
        if not named:
            return
        checked = subprocess.run(
            self._command("cat-file", "--batch-check=%(objectname) %(objecttype) %(objectsize)"),
            input="".join(f"{o}\n" for o in named).encode(),
            capture_output=True, check=True, env=_git_env(),
        )  # fmt: skip
        for line in checked.stdout.decode().splitlines():
            object_id, kind, size = line.split(" ")
            if kind != "blob":
                continue
            if int(size) > max_bytes:
                stats.skipped_large += 1
                continue
            yield object_id, named[object_id]

    def read_blobs(
        self, blobs: Iterable[str], max_bytes: int, stats: ScanStats
    ) -> Iterator[tuple[str, str]]:
        """(blob id, text) through one `git cat-file --batch`, skipping binary and large blobs."""
        wanted = list(blobs)
        if not wanted:
            return
        process = subprocess.Popen(
            self._command("cat-file", "--batch"), env=_git_env(),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        assert process.stdin is not None and process.stdout is not None
        # Feed ids from a thread so a large answer never blocks on a full input pipe.
        feeder = threading.Thread(target=_feed, args=(process.stdin, wanted), daemon=True)
        feeder.start()
        try:
            for _ in wanted:
                header = process.stdout.readline().decode().split()
                if len(header) != 3:  # "<id> missing"
                    continue
                object_id, size = header[0], int(header[2])
                content = process.stdout.read(size)
                process.stdout.read(1)  # the newline after each object
                if size > max_bytes:
                    stats.skipped_large += 1
                    continue
                text = decode(content)
                if text is None:
                    stats.skipped_binary += 1
                    continue
                stats.blobs += 1
                yield object_id, text
        finally:
            process.stdout.close()
            process.wait()
            feeder.join()

    def commit_adding(self, blob: str) -> str | None:
        """The oldest commit (on any ref) whose diff adds `blob`."""
        found = self.run("log", "--all", "--reverse", "--format=%H", f"--find-object={blob}")
        commits = found.decode().split()
        return commits[0] if commits else None


def _feed(stdin: IO[bytes], object_ids: list[str]) -> None:
    try:
        for object_id in object_ids:
            stdin.write(f"{object_id}\n".encode())
        stdin.close()
    except BrokenPipeError:  # the reader stopped early (the caller stopped iterating)
        pass


def _git_env() -> dict[str, str]:
    return {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}


__all__ = [
    "ALLOW_MARKER",
    "Finding",
    "GitFailed",
    "GitRepository",
    "IGNORE_FILE",
    "IgnoreRules",
    "NotAGitRepository",
    "PathNotFound",
    "ScanError",
    "ScanStats",
    "Scanner",
    "decode",
    "scan_text",
]

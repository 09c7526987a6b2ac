"""What `pulumi up` uploads to the host, and where: the app's files with their paths kept.

The app's directory on the host is the compose project directory: the directory of the
first compose file, as `docker compose -f <that file>` sees it in the repository. Every
compose file and every entry of `app.files` (a file or a whole directory) keeps its path
relative to that directory, so `./nginx/default.conf` in a compose file finds the file it
found in the repository. Pure functions over this machine's files; no Pulumi here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from dropship.remote.commands import files_digest


@dataclass(frozen=True)
class Upload:
    source: Path
    """On this machine."""
    host_path: str
    """Relative to the app's directory on the host (and to `incoming/` while it is uploaded)."""
    is_directory: bool
    files: tuple[tuple[str, bytes], ...]
    """(host path, content) of every file it brings, in path order."""

    @property
    def digest(self) -> str:
        return files_digest(dict(self.files))


def compose_root(compose_files: tuple[str, ...]) -> PurePosixPath:
    """The compose project directory, relative to the Pulumi project: the first compose file's directory."""
    return PurePosixPath(compose_files[0]).parent


def host_path(entry: str, root: PurePosixPath) -> str | None:
    """Where a project-relative entry lands on the host, or None when it is outside the compose project."""
    path = PurePosixPath(os.path.normpath(entry))
    try:
        relative = path.relative_to(root)
    except ValueError:
        return None
    return str(relative)


def plan(project_dir: Path, compose_files: tuple[str, ...], files: tuple[str, ...]) -> list[Upload]:
    """The uploads of a valid app (the settings have checked existence, containment and overlaps)."""
    root = compose_root(compose_files)
    uploads = []
    for entry in (*compose_files, *files):
        source = project_dir / entry
        target = host_path(entry, root)
        assert target is not None, f"{entry} is outside {root}"
        if source.is_dir():
            contents = tuple(
                (str(PurePosixPath(target) / path.relative_to(source).as_posix()), path.read_bytes())
                for path in sorted(p for p in source.rglob("*") if p.is_file())
            )
            uploads.append(Upload(source=source, host_path=target, is_directory=True, files=contents))
        else:
            uploads.append(Upload(source=source, host_path=target, is_directory=False, files=((target, source.read_bytes()),)))
    return uploads

"""The folder source: reads page files from the inbox (or paths given), moves them to processed or quarantine.

Inbox pages are moved to `processed` once stored, or to `quarantine` with a
`.error` file beside them when they are rejected or cannot be read. Pages named
explicitly from elsewhere are left in place; the bytes of a rejected one are
written to quarantine, so there is a record of it.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import SourceError
from .base import RawPage

# Files a downloader or editor may still be writing; they are picked up next time.
PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", ".swp", ".error")


@dataclass(frozen=True, slots=True)
class Folders:
    inbox: Path
    processed: Path
    quarantine: Path


class InboxSource:
    """Every page waiting in the inbox, or the files and folders named, in name order per folder."""

    def __init__(self, folders: Folders, paths: Sequence[Path] = ()) -> None:
        self.folders = folders
        self.paths = list(paths) or [folders.inbox]

    def pages(self) -> Iterator[RawPage | SourceError]:
        for path in self.paths:
            if path.is_dir():
                try:
                    entries = folder_entries(path)
                except SourceError as exc:
                    yield exc
                    continue
            else:
                entries = [path]  # a missing or odd path is reported by the read, like any unreadable page
            for entry in entries:
                try:
                    yield RawPage(name=entry.name, origin=str(entry), data=read_page_file(entry))
                except SourceError as exc:
                    yield exc

    def done(self, page: RawPage) -> None:
        path = Path(page.origin)
        if self._in_inbox(path):
            move_into(path, self.folders.processed)

    def quarantine(self, item: RawPage | SourceError, message: str) -> None:
        path = Path(item.origin if isinstance(item, RawPage) else item.where)
        try:
            if self._in_inbox(path):
                target = move_into(path, self.folders.quarantine)
            elif isinstance(item, RawPage):
                target = write_into(item.data, self.folders.quarantine, item.name)
            else:
                return  # unreadable and not ours to move: the report is the only record
            target.with_name(target.name + ".error").write_text(message + "\n", encoding="utf-8")
        except OSError as exc:
            raise SourceError(str(path), f"cannot quarantine it ({exc.strerror or exc})") from None

    def _in_inbox(self, path: Path) -> bool:
        # The parent, not the entry, is resolved: the entry may be a broken link or a loop.
        return path.absolute().parent.resolve() == self.folders.inbox.resolve()


def folder_entries(folder: Path) -> list[Path]:
    """Every entry that may be a page, sorted; folders and links too, so an odd one is reported, not skipped."""
    try:
        names = sorted(entry.name for entry in os.scandir(folder))
    except OSError as exc:
        raise SourceError(str(folder), f"cannot list the folder ({exc.strerror or exc})") from None
    return [folder / name for name in names if is_page_name(name)]


def is_page_name(name: str) -> bool:
    return not name.startswith(".") and not name.endswith(PARTIAL_SUFFIXES)


def read_page_file(path: Path) -> bytes:
    """The bytes of a regular file; anything else (folder, FIFO, device, broken link) is a SourceError."""
    try:
        # O_NONBLOCK: opening a FIFO with no writer returns at once instead of hanging the run.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise SourceError(str(path), describe_open_error(path, exc)) from None
    kind = stat.S_IFMT(os.fstat(fd).st_mode)
    if kind != stat.S_IFREG:
        os.close(fd)
        raise SourceError(str(path), f"not a page file but {FILE_KINDS.get(kind, 'a special file')}")
    with os.fdopen(fd, "rb") as handle:
        try:
            return handle.read()
        except OSError as exc:
            raise SourceError(str(path), f"cannot read it ({exc.strerror or exc})") from None


FILE_KINDS = {
    stat.S_IFDIR: "a folder", stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
}


def describe_open_error(path: Path, exc: OSError) -> str:
    if exc.errno == errno.ENOENT and path.is_symlink():
        return f"broken symbolic link (to {os.readlink(path)}, which does not exist)"
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    if exc.errno == errno.EACCES:
        return "permission denied: the page cannot be read"
    return f"cannot open it ({exc.strerror or exc})"


def move_into(path: Path, folder: Path) -> Path:
    target = free_name(folder, path.name)
    shutil.move(str(path), target)
    return target


def write_into(data: bytes, folder: Path, name: str) -> Path:
    target = free_name(folder, name)
    target.write_bytes(data)
    return target


def free_name(folder: Path, name: str) -> Path:
    """`folder/name`, or `folder/stem.N.suffix` when that is taken: never overwrite a kept page."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    stem, suffix = Path(name).stem, Path(name).suffix
    counter = 1
    while target.exists() or target.is_symlink() or target.with_name(target.name + ".error").exists():
        target = folder / f"{stem}.{counter}{suffix}"
        counter += 1
    return target

"""Submissions: one notebook per student, read by the grader's own process without following links or
reading anything but regular files of a bounded size."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ganlib.errors import GanlibError, first_line

from .chapters import Chapter, OldFormat, best_chapter, match, notebook_code

MAX_NOTEBOOK_BYTES = 32 * 2**20  # larger files are refused unread (a notebook's code is far smaller; its outputs
# are what makes it large)


def printable(name: str) -> str:
    """A file name as the CSV, the feedback and the terminal show it: bytes that are not UTF-8 as \\xNN, control,
    format and line-separator characters (ANSI escapes, newlines, bidirectional overrides) as \\uNNNN,
    and the backslash itself doubled, so that two different names never look alike."""
    out = []
    for ch in name:
        if "\udc80" <= ch <= "\udcff":  # a byte that is not UTF-8 (os.fsdecode's surrogate escape)
            out.append(f"\\x{ord(ch) - 0xdc00:02x}")
        elif ch == "\\":
            out.append("\\\\")
        elif unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            out.append(f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
        else:
            out.append(ch)
    return "".join(out)


@dataclass
class Submission:
    """One student's notebook, read (not run) by the grader's own process."""

    student: str
    path: Path | None  # the notebook graded (None: the student's folder has none)
    shown: str = ""  # its path relative to the submissions folder, for the CSV
    cells: list[tuple[int, str]] = field(default_factory=list)  # (cell number, code)
    problem: str = ""  # why it cannot be graded ("" if it can)
    notes: list[str] = field(default_factory=list)
    sha256: str = ""  # of the file's bytes, so that a re-run can tell an unchanged notebook

    @property
    def code(self) -> str:
        return "\n".join(source for _, source in self.cells)


def read_bytes(path: Path, limit: int) -> bytes:
    """The content of a regular file, at most `limit` bytes: no symbolic link is followed, and a FIFO or a
    device is refused without reading (OSError with a message for the feedback)."""
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise OSError("the file is a symbolic link; the grader does not follow links: submit the notebook itself.")
    if not stat.S_ISREG(info.st_mode):
        raise OSError("this is not a regular file (a pipe or a device?): submit the notebook file itself.")
    too_large = OSError(f"the file is larger than {limit >> 20} MB (its outputs, usually): clear them (Edit > Clear "
                        f"outputs of all cells), save, and submit again.")
    if info.st_size > limit:  # refused before reading
        raise too_large
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
                 | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # replaced between the two looks
            raise OSError("this is not a regular file: submit the notebook file itself.")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise too_large
    return data


def read_submission(student: str, path: Path, folder: Path) -> Submission:
    sub = Submission(student, path, printable(path.relative_to(folder).as_posix()))
    try:
        data = read_bytes(path, MAX_NOTEBOOK_BYTES)
    except OSError as e:
        sub.problem = str(e) if e.errno is None else f"the file could not be read ({e.strerror})."
        return sub
    sub.sha256 = hashlib.sha256(data).hexdigest()
    try:
        sub.cells = notebook_code(json.loads(data.decode("utf-8", errors="replace")))
    except OldFormat as e:
        sub.problem = str(e)
    except Exception as e:
        sub.problem = (f"the file is not a readable notebook ({type(e).__name__}: {first_line(e)}); open it in "
                       f"Jupyter or Colab, save it, and submit it again.")
    return sub


def _hidden(name: str) -> bool:
    return name.startswith((".", "__"))  # not checkpoints, not __MACOSX copies


def find_submissions(folder: str | Path, skip: tuple[Path, ...] = ()) -> list[tuple[str, list[Path]]]:
    """(student, candidate notebooks): each notebook directly in `folder` is a student (named after the file);
    each sub-folder is a student (named after the folder) with the notebooks anywhere inside it. Links and
    special files are candidates too, so that their feedback says why they were not graded."""
    folder = Path(folder)
    if folder.suffix == ".ipynb" and not folder.is_dir():
        return [(printable(folder.stem), [folder])]
    if not folder.is_dir():
        raise GanlibError(f"{str(folder)!r} is not a folder: pass the folder that holds the submitted notebooks.")
    skip = tuple(p.resolve() for p in skip)
    found = []
    for entry in sorted(folder.iterdir()):
        if _hidden(entry.name) or entry.absolute() in skip or entry.resolve() in skip:
            continue
        mode = os.lstat(entry).st_mode
        if stat.S_ISDIR(mode):
            notebooks = []
            for top, dirs, files in os.walk(entry, followlinks=False):
                dirs[:] = sorted(d for d in dirs if not _hidden(d))
                notebooks += [Path(top) / f for f in sorted(files) if f.endswith(".ipynb") and not _hidden(f)]
            found.append((printable(entry.name), notebooks))
        elif entry.suffix == ".ipynb" or stat.S_ISLNK(mode):
            found.append((printable(entry.stem if entry.suffix == ".ipynb" else entry.name), [entry]))
    if not found:
        raise GanlibError(f"no notebooks in {str(folder)!r}: put one notebook per student (any file name), or one "
                          f"folder per student, in it.")
    return found


def collect(folder: str | Path, chapter: Chapter | None, chapters: list[Chapter],
            skip: tuple[Path, ...] = ()) -> tuple[Chapter, list[Submission]]:
    """Read every submission, decide the chapter (given, or the one most submissions look like), and pick
    each student's notebook for it."""
    folder = Path(folder)
    root = folder.parent if folder.suffix == ".ipynb" and not folder.is_dir() else folder
    candidates = [(student, [read_submission(student, p, root) for p in paths])
                  for student, paths in find_submissions(folder, skip)]
    if chapter is None:
        if len(chapters) == 1:
            chapter = chapters[0]
        else:
            votes = Counter(best.name for _, subs in candidates for best in
                            [_best_of(chapters, subs)] if best is not None)
            top = votes.most_common(2)
            if not top or (len(top) > 1 and top[0][1] == top[1][1]):
                names = ", ".join(c.name for c in chapters) or "none found"
                raise GanlibError(f"cannot tell which chapter {str(folder)!r} holds (chapters: {names}): pass "
                                  f"--chapter NN, or the chapter's exercise notebook.")
            chapter = next(c for c in chapters if c.name == top[0][0])
    submissions = []
    for student, subs in candidates:
        if not subs:
            submissions.append(Submission(student, None, problem="no notebook (.ipynb) in the student's folder."))
            continue
        readable = [s for s in subs if not s.problem] or subs
        best = max(readable, key=lambda s: (match(chapter, s.code), _mtime(s.path), str(s.path)))
        for other in subs:
            if other is not best:
                why = f" ({other.problem})" if other.problem else ""
                best.notes.append(f"`{printable(other.path.name)}` was not graded: only one notebook per student "
                                  f"is{why}.")
        looks_like = _best_of(chapters, [best]) if not best.problem else None
        if looks_like is not None and looks_like.name != chapter.name:
            best.notes.append(f"this notebook looks like chapter {looks_like.name}, but was graded as {chapter.name}.")
        submissions.append(best)
    return chapter, submissions


def _best_of(chapters: list[Chapter], subs: list[Submission]) -> Chapter | None:
    best = [b for s in subs if not s.problem for b in [best_chapter(chapters, s.code)] if b is not None]
    return Counter(best).most_common(1)[0][0] if best else None


def _mtime(path: Path) -> float:
    try:
        return os.lstat(path).st_mtime
    except OSError:
        return 0.0


def unique_names(submissions: list[Submission]) -> list[str]:
    """Rename the second and later submissions of one student "name (2)", ...; returns a warning for each
    student submitted more than once (a notebook and a folder of the same name, say)."""
    seen: Counter = Counter()
    for sub in submissions:
        seen[sub.student] += 1
        if seen[sub.student] > 1:
            sub.notes.append(f"{sub.student} was submitted {seen[sub.student]} times; this one was graded as "
                             f"\"{sub.student} ({seen[sub.student]})\".")
            sub.student = f"{sub.student} ({seen[sub.student]})"
    return [f"{name} was submitted {n} times (graded separately: {name}, {name} (2), ...)"
            for name, n in seen.items() if n > 1]

"""Reports: the CSV (a row written as each submission finishes, so that a killed run keeps what was graded and
`--resume` can continue it) and the markdown feedback files."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ganlib.errors import GanlibError

STATUSES = ("ok", "timeout", "crashed", "invalid", "missing")
OUTPUT_SHOWN = 2_000  # characters of a submission's printed output its feedback shows
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet would run a cell starting with these


@dataclass
class Outcome:
    """One column of one student's row."""

    column: str  # the exercise's name, or "extra:<name>" for an instructor's private check
    passed: bool
    message: str
    seconds: float = 0.0

    @property
    def points(self) -> int:
        return int(self.passed)


@dataclass
class Graded:
    """A graded submission: its row of the CSV and its feedback."""

    student: str
    notebook: str  # the file graded, relative to the submissions folder
    status: str  # one of STATUSES
    outcomes: list[Outcome]
    notes: list[str]
    output: str = ""  # the beginning of what the submission printed
    output_chars: int = 0  # how much it printed in all
    seconds: float = 0.0
    sha256: str = ""  # of the notebook graded

    @property
    def total(self) -> int:
        return sum(o.points for o in self.outcomes)


def cell(value) -> str:
    """A CSV cell that a spreadsheet shows as text: a leading = + - @ tab or CR gets a quote mark, and so does a
    leading quote mark, so that `=alice` and `'=alice` stay two different cells."""
    text = str(value)
    return "'" + text if text.startswith((*FORMULA_START, "'")) else text


def markdown_text(text: str) -> str:
    """Text from a check or a submission as markdown shows it literally: one line, with the characters that
    would make emphasis, headings, links, tables or HTML escaped; `code spans` are kept (nothing renders
    inside them)."""
    parts = re.split(r"(`[^`\n]+`)", " ".join(str(text).splitlines()))
    text = "".join(part if k % 2 else re.sub(r"([\\`*_\[\]<>#|~])", r"\\\1", part) for k, part in enumerate(parts))
    text = re.sub(r"^(\s*)([-+=])", r"\1\\\2", text)  # not a list item or a heading's underline
    return re.sub(r"^(\s*\d+)([.)])", r"\1\\\2", text)  # not a numbered list


def header(cols: list[str]) -> list[str]:
    return ["student", *cols, "total", "max", "status", "notebook", "sha256"]


class GradesFile:
    """The CSV, appended to (and flushed to disk) as each submission finishes, and sorted at the end."""

    def __init__(self, path: Path, cols: list[str], resume: bool = False):
        self.path, self.cols = path, cols
        self.kept: dict[str, dict] = {}  # escaped student name -> row of an earlier run
        if resume and path.exists():
            with open(path, newline="", encoding="utf-8") as f:
                reader = csv.reader(f)
                rows = list(reader)
            if not rows or rows[0] != header(cols):
                raise GanlibError(f"--resume: {str(path)!r} has other columns than this run ({', '.join(cols)}): "
                                  f"grade into a new file, or leave out --resume.")
            self.kept = {row[0]: dict(zip(rows[0], row)) for row in rows[1:] if len(row) == len(rows[0])}
        self.rows: list[list[str]] = []
        self.file = open(path, "w", newline="", encoding="utf-8")
        self.writer = csv.writer(self.file, lineterminator="\n")
        self.writer.writerow(header(cols))
        self.file.flush()

    def earlier(self, student: str, notebook: str, sha256: str) -> dict | None:
        """The row of an earlier run for this very notebook (same student, path and content), if any."""
        row = self.kept.get(cell(student))
        if row and sha256 and row.get("notebook") == cell(notebook) and row.get("sha256") == sha256:
            return row
        return None

    def add(self, g: Graded) -> None:
        points = {o.column: o.points for o in g.outcomes}
        row = [cell(v) for v in (g.student, *(points.get(c, 0) for c in self.cols), g.total, len(self.cols),
                                 g.status, g.notebook, g.sha256)]
        self.add_row(row)

    def add_row(self, row: list[str]) -> None:
        self.rows.append(row)
        self.writer.writerow(row)
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        """Rewrite the file sorted by student (atomically: a kill now leaves the unsorted file)."""
        from ganlib.files import atomic_write_text

        self.file.close()
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header(self.cols))
        writer.writerows(sorted(self.rows, key=lambda r: r[0].lower()))
        atomic_write_text(buffer.getvalue(), self.path)


def feedback(g: Graded, chapter_name: str) -> str:
    """The markdown feedback of one submission: points, each check's message, notes, and printed output."""
    lines = [f"# {chapter_name}: feedback for {markdown_text(g.student)}", "",
             f"**{g.total} of {len(g.outcomes)} points** · notebook {markdown_text(g.notebook or '(none)')} · "
             f"status: {g.status}", "", "| exercise | points | result |", "|---|---|---|"]
    lines += [f"| `{o.column}` | {o.points} | {'passed' if o.passed else 'not yet'} |" for o in g.outcomes]
    if g.status in ("invalid", "missing"):  # nothing ran: say why once
        lines += ["", markdown_text(g.outcomes[0].message[0].upper() + g.outcomes[0].message[1:])]
    else:
        for o in g.outcomes:
            lines += ["", f"## `{o.column}`: {'passed' if o.passed else 'not yet'}", "", markdown_text(o.message)]
    if g.notes:
        lines += ["", "## Notes", ""] + [f"- {markdown_text(n)}" for n in g.notes]
    if g.output_chars:
        shown = g.output[:OUTPUT_SHOWN]
        fence = "`" * max(3, 1 + max((len(r) for r in re.findall(r"`+", shown)), default=0))
        lines += ["", "## What your code printed", "", f"{fence}text", shown.rstrip("\n"), fence]
        if g.output_chars > len(shown):
            lines.append(f"(the first {len(shown):,} of {g.output_chars:,} characters)")
    lines += ["", "---", "How this was graded: each exercise was checked on its own, with your notebook's "
              "functions, classes and the imports they use (cells that only compute or train were not run). "
              "Run the check cell below each exercise to see the same messages."]
    return "\n".join(lines) + "\n"


def write_feedback(path: Path, text: str) -> None:
    """Write one feedback file as UTF-8, never through a symbolic link: a new file beside it, renamed over it."""
    partial = path.with_name(f".{path.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(partial, path)


def feedback_names(students: list[str]) -> dict[str, str]:
    """Student -> feedback file name, different for different students: a name that is not already a plain
    file name of at most 80 characters, or that another name becomes (ignoring case, as some file systems do),
    gets a short hash."""
    base = {s: re.sub(r"[^\w.-]+", "_", s).strip("._")[:80] or "student" for s in students}
    taken = Counter(b.lower() for b in base.values())
    names = {}
    for s in students:
        plain = base[s] == s and taken[s.lower()] == 1
        names[s] = (s if plain else f"{base[s]}-{hashlib.sha256(s.encode()).hexdigest()[:8]}") + ".md"
    return names

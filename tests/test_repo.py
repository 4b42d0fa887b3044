"""Where the course is published: the README, the notebooks and pyproject.toml name one repository and one
release, and `set-repo` moves all of them to a fork."""

import shutil
from pathlib import Path

import pytest

import ganlib
from gancourse.__main__ import main
from gancourse.repo import linked_files, links, project, set_repo
from ganlib.errors import GanlibError

ROOT = Path(__file__).resolve().parents[1]


def test_readme_notebooks_and_pyproject_agree_on_repository_and_release():
    repo, tag = project(ROOT)
    version = next(line for line in (ROOT / "pyproject.toml").read_text().splitlines() if line.startswith("version"))
    assert tag == "v" + version.split('"')[1] == "v" + ganlib.__version__  # what setup() prints
    found = {path.relative_to(ROOT).as_posix(): links(path.read_text()) for path in linked_files(ROOT)}
    readme = found.pop("README.md")
    assert len(found) >= 18 and all(len(notebook) == 1 for notebook in found.values())  # one install per notebook
    lectures_and_exercises = [p for p in found if not p.startswith("solutions/")]
    assert len(readme) == len(lectures_and_exercises)  # one badge for each lecture and exercise notebook
    assert set(readme + [lk for notebook in found.values() for lk in notebook]) == {(repo, tag)}


def copy_course(tmp_path: Path) -> Path:
    for name in ("README.md", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    for folder in ("notebooks", "solutions", "exercises"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    return tmp_path


def test_set_repo_moves_every_link_to_a_fork_and_back(tmp_path, capsys):
    course = copy_course(tmp_path)
    repo, tag = project(course)
    assert main(["set-repo", "https://github.com/someone/gan-course-2026.git", "--root", str(course)]) == 0
    notebooks = len(list(course.glob("*/*.ipynb")))
    assert f"changed {2 + notebooks} file(s)" in capsys.readouterr().out  # pyproject, the README and every notebook
    assert project(course) == ("someone/gan-course-2026", tag)
    for path in linked_files(course):
        text = path.read_text()
        assert set(links(text)) == {("someone/gan-course-2026", tag)}, path
        assert f"github.com/{repo}" not in text, path
    (course / "pyproject.toml").write_text((course / "pyproject.toml").read_text().replace(
        'version = "', 'version = "9.', 1))  # a release: only the tag moves
    set_repo(course)
    assert {lk for p in linked_files(course) for lk in links(p.read_text())} == {
        ("someone/gan-course-2026", "v9." + tag[1:])}
    assert set_repo(course, repo) and set_repo(course, repo) == []  # back again; then nothing left to change
    assert "someone" not in (course / "README.md").read_text()


def test_set_repo_refuses_what_is_not_owner_slash_name(tmp_path):
    course = copy_course(tmp_path)
    with pytest.raises(GanlibError, match="OWNER/NAME"):
        set_repo(course, "just-a-name")
    with pytest.raises(GanlibError, match="no pyproject.toml"):
        set_repo(tmp_path / "nowhere")

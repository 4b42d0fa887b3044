"""Where the course is published: the repository and the release that Colab installs.

`pyproject.toml` is the source: ``Repository`` under ``[project.urls]`` and the project's ``version``. The
README's Colab badges open the notebooks of release ``v<version>`` of that repository, and every notebook's
first cell installs that same release (``pip install "ganlib @ git+<repository>@v<version>"``), so the
notebook a student opens and the library it imports always match. `set_repo` rewrites all of them for a fork
or after a version bump (``python -m gancourse set-repo OWNER/NAME``).
"""

from __future__ import annotations

import re
from pathlib import Path

from ganlib.errors import GanlibError

GITHUB = "https://github.com/"
# `pip install "ganlib @ git+https://github.com/OWNER/NAME@REF"` in a first cell (REF optional)
INSTALL = re.compile(r"git\+https://github\.com/(?P<repo>[\w-]+/[\w.-]+?)(?:@(?P<ref>[\w.+-]+))?(?=[\"'\s\\]|$)")
# a Colab badge's target: https://colab.research.google.com/github/OWNER/NAME/blob/REF/PATH
BADGE = re.compile(r"colab\.research\.google\.com/github/(?P<repo>[\w-]+/[\w.-]+)/blob/(?P<ref>[\w.+-]+)/")
_REPOSITORY = re.compile(r'^(Repository = ")https://github\.com/([\w-]+/[\w.-]+)(")$', re.M)
_VERSION = re.compile(r'^version = "([^"]+)"$', re.M)
_OWNER_NAME = re.compile(r"^[\w-]+/[\w.-]+$")


def project(root: str | Path = ".") -> tuple[str, str]:
    """(OWNER/NAME of the repository, release tag ``v<version>``) as `pyproject.toml` in `root` gives them."""
    path = Path(root) / "pyproject.toml"
    if not path.is_file():
        raise GanlibError(f"no pyproject.toml in {str(root)!r}: run this from the course folder.")
    text = path.read_text()
    repo, version = _REPOSITORY.search(text), _VERSION.search(text)
    if repo is None or version is None:
        raise GanlibError(f"{path} needs `version = \"X.Y.Z\"` and, under [project.urls], "
                          f"`Repository = \"{GITHUB}OWNER/NAME\"`.")
    return repo.group(2), f"v{version.group(1)}"


def linked_files(root: str | Path = ".") -> list[Path]:
    """The files that link to the repository: the README and every notebook."""
    root = Path(root)
    return [root / "README.md", *sorted(p for d in ("notebooks", "solutions", "exercises")
                                        for p in (root / d).glob("*.ipynb"))]


def links(text: str) -> list[tuple[str, str | None]]:
    """(OWNER/NAME, REF or None) of every install line and Colab badge in `text`."""
    return [(m["repo"], m["ref"]) for pattern in (INSTALL, BADGE) for m in pattern.finditer(text)]


def set_repo(root: str | Path = ".", repo: str | None = None) -> list[Path]:
    """Point pyproject.toml, the README's badges and the notebooks' first cells at `repo` (OWNER/NAME; default:
    the one pyproject.toml names) and at the release of pyproject's version. Returns the files it changed."""
    root = Path(root)
    old, tag = project(root)
    repo = old if repo is None else repo.strip().removeprefix(GITHUB).removesuffix(".git").strip("/")
    if not _OWNER_NAME.match(repo):
        raise GanlibError(f"{repo!r} is not a GitHub repository: write it as OWNER/NAME, e.g. my-name/gan-course.")
    changed = []
    pyproject = root / "pyproject.toml"
    text = pyproject.read_text()
    new = _REPOSITORY.sub(lambda m: f"{m[1]}{GITHUB}{repo}{m[3]}", text)
    if new != text:
        pyproject.write_text(new)
        changed.append(pyproject)
    for path in linked_files(root):
        if not path.is_file():
            continue
        text = path.read_text()
        new = INSTALL.sub(f"git+{GITHUB}{repo}@{tag}", text)
        new = BADGE.sub(f"colab.research.google.com/github/{repo}/blob/{tag}/", new)
        new = re.sub(re.escape(f"{GITHUB}{old}") + r"(?![\w.-])", f"{GITHUB}{repo}", new)  # plain links (notes)
        if new != text:
            path.write_text(new)
            changed.append(path)
    return changed

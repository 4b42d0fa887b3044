"""The lectures type no measured figure into their prose: every number a reader sees is printed by a cell.

A number in a lecture's markdown (outside LaTeX math, `$...$` and `$$...$$`) is allowed only when it is
- written literally in a code cell of the same notebook (a constant the code uses: steps, psi, a learning rate,
  a seed; compared by value, so `1e-3` in the prose matches `0.001` in the code, `10,000` matches `10_000`, and
  `90 %` matches `0.9`), or
- a year (1900-2099), a small integer 0-10, an image size (`8x8`, `16×16`), a chapter, section, equation or
  exercise number ("chapter 05", "sections 3 and 4", a numbered heading or list item), or part of a citation (a
  parenthesis that names a paper or "et al.", an arXiv number, a link).
Decimals, percentages, ratios ("3x") and other integers that no code cell holds are measured figures: a cell
must print them (or read them from a results file and print them), and the prose says in words what to look at.
"""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LECTURES = sorted((ROOT / "notebooks").glob("*.ipynb"))

# a number: digits with optional thousands commas, a decimal part, an exponent; then an optional unit that
# makes it a percentage, a ratio or a multiple (k = thousand); not part of an identifier (ring8, G_ema2, v0.1)
NUMBER = re.compile(r"(?<![\w.\-])(?P<num>\d{1,3}(?:,\d{3})+(?!\d)|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
                    r"(?P<unit>\s?%|x(?![\w])|[kKM](?![\w]))?(?![\w.]*\d)(?![A-Za-z_])")
CODE_NUMBER = re.compile(r"(?<![\w.])\d[\d_]*(?:\.\d*)?(?:[eE][-+]?\d+)?")
# spans whose numbers are allowed whatever they are
ALLOWED_SPANS = [
    re.compile(r"\$\$.*?\$\$|\$[^$\n]+\$", re.S),  # LaTeX math
    re.compile(r"\]\([^)]*\)|https?://\S+"),  # links
    re.compile(r"\d+\s?[x×]\s?\d+"),  # image sizes, grids: 8x8, 16×16
    re.compile(r"\b(?:chapters?|sections?|equations?|eqs?\.|exercises?|tables?|figures?|figs?\.|algorithms?|"
               r"appendix|steps? of the list|part)\s+\d+[a-z]?(?:\s*(?:,|and|or|to|–|-)\s*\d+[a-z]?)*", re.I),
    re.compile(r"^\s*(?:#{1,6}\s+)?\d+[a-z]?[.)]\s", re.M),  # numbered headings and list items
    re.compile(r"\b\d{4}\.\d{4,5}(?:v\d+)?\b"),  # arXiv numbers
    re.compile(r"\((?=[^()]*(?:et\s+al\.|\bpapers?\b))[^()]*\)"),  # a parenthesis citing a paper
    re.compile(r"\*Run time \(`cpu` profile\):[^*]*\*"),  # the run time under the title: test_bench checks it
]


def _value(token: str) -> float:
    return float(token.replace(",", "").replace("_", ""))


def code_values(cells: list[dict]) -> set[float]:
    """The numeric literals written in the notebook's code cells, as values."""
    values = set()
    for cell in cells:
        if cell["cell_type"] == "code":
            for token in CODE_NUMBER.findall("".join(cell["source"])):
                try:
                    values.add(_value(token.rstrip(".")))
                except ValueError:
                    pass
    return values


def _blank(text: str, pattern: re.Pattern) -> str:
    """`text` with the matches of `pattern` replaced by spaces (so that positions, and context, stay put)."""
    return pattern.sub(lambda m: " " * len(m.group(0)), text)


def offending_tokens(text: str, in_code: set[float]) -> list[tuple[str, str]]:
    """(token, context) for each measured figure in one markdown cell's text."""
    scrubbed = text
    for pattern in ALLOWED_SPANS:
        scrubbed = _blank(scrubbed, pattern)
    found = []
    for m in NUMBER.finditer(scrubbed):
        num, unit = m.group("num"), (m.group("unit") or "").strip()
        value = _value(num) * (1000 if unit == "k" else 1e6 if unit == "M" else 1)
        is_int = re.fullmatch(r"[\d,]+", num) is not None
        if value in in_code or _value(num) in in_code or (unit == "%" and value / 100 in in_code):
            continue
        if is_int and unit in ("", "k", "M") and (0 <= value <= 10 or (unit == "" and 1900 <= value <= 2099)):
            continue
        context = " ".join(text[max(0, m.start() - 40):m.end() + 40].split())
        found.append((m.group(0).strip(), context))
    return found


def lecture_offences(path: Path) -> list[str]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    in_code = code_values(cells)
    return [f"cell [{k}]: {token!r} in \"...{context}...\""
            for k, cell in enumerate(cells) if cell["cell_type"] == "markdown"
            for token, context in offending_tokens("".join(cell["source"]), in_code)]


@pytest.mark.parametrize("path", LECTURES, ids=lambda p: p.stem)
def test_lecture_prose_types_no_measured_figure(path):
    offences = lecture_offences(path)
    assert not offences, (f"notebooks/{path.name} types {len(offences)} figure(s) no code cell computes; print each "
                          f"from a cell and say in words what it shows:\n" + "\n".join(offences))


def test_the_rule_tells_figures_from_constants():
    code = {1000.0, 0.001, 0.5, 0.9}
    prose = ("In 2014 (Goodfellow et al., 2014, reports 0.93) we trained 1,000 steps at lr 1e-3 on 8x8 and "
             "16×16 digits, psi 0.5, 3 seeds, 90 % mixing, in chapter 05 and sections 3 and 4, covering $0.25$ of "
             "$$17.5$$ modes: FD 34.1, 94 %, 2x faster, 12 runs, 50k samples, ring8, arXiv 1710.10196.")
    tokens = [t for t, _ in offending_tokens(prose, code)]
    assert tokens == ["34.1", "94 %", "2x", "12", "50k"]
    assert [t for t, _ in offending_tokens("## 12. Heading\n13. item", set())] == []
    assert offending_tokens("FD 3.2 here", set())[0][1] == "FD 3.2 here"


def test_every_lecture_is_tested():
    assert len(LECTURES) >= 7

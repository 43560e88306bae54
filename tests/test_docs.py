"""The docs stay true: README.md and docs/*.md name only things that exist.

Every relative link reaches a file (and its ``#anchor`` a heading there),
every repository path in backticks exists, every ``fedge`` command shown
names a real subcommand and only options it has, every ``bash X.sh`` names a
script that exists, every ``python -m`` module and dotted ``fedge.`` name
can be found, and every route shown is in ``server/openapi.yaml``. Reads
files only: no network, no server, no TensorFlow.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from fedge.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Top-level names a backticked path must start with to count as a repository
# path; anything else (`runs/bundle/`, `<data_dir>/lock`) is an example.
REPO_ROOTS = (
    "bench/",
    "client_sim/",
    "converters/",
    "docs/",
    "fedge/",
    "notebooks/",
    "scripts/",
    "server/",
    "tests/",
    "web/",
)
REPO_FILES = {"LICENSE", "MANIFEST.in", "README.md", "pyproject.toml", "uv.lock"}
# Paths that setup or a run creates, so a fresh checkout lacks them.
GENERATED = ("web/node_modules",)
# Pages that another branch of issue 20 adds; a link to one is allowed while
# it is missing and checked like any other once it is there. Drop an entry
# when its page has landed.

FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`([^`]+)`")
LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
PATH_CHARS = re.compile(r"[\w./*-]+")
BASH_SCRIPT = re.compile(r"\bbash\s+([\w./-]+\.sh)\b")
PYTHON_MODULE = re.compile(r"\bpython\s+-m\s+((?:bench|scripts)(?:\.\w+)+)")
DOTTED_NAME = re.compile(r"fedge(?:\.\w+)+")
ROUTE = re.compile(r"^(GET|POST|PUT|PATCH|DELETE) (/\S*)$")
OPENAPI_PATH = re.compile(r"^  (/\S*):\s*$")
OPENAPI_METHOD = re.compile(r"^    (get|post|put|patch|delete):\s*$")
OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


@dataclass(frozen=True)
class Page:
    """One markdown page, split into its code blocks and its prose."""

    path: Path
    text: str

    @property
    def name(self) -> str:
        return self.path.relative_to(ROOT).as_posix()

    @property
    def blocks(self) -> list[str]:
        return [block.split("\n", 1)[1] for block in FENCE.findall(self.text)]

    @property
    def prose(self) -> str:
        return FENCE.sub("", self.text)

    @property
    def inline_code(self) -> list[str]:
        """Code spans, which may wrap across lines, with their spaces collapsed."""
        return [" ".join(code.split()) for code in INLINE_CODE.findall(self.prose)]


def load(path: Path) -> Page:
    return Page(path=path, text=path.read_text(encoding="utf-8"))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped
    (backticks and links' brackets included), spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(page: Page) -> set[str]:
    """Every heading's anchor; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(page.prose):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(page: Page) -> list[str]:
    broken = []
    prose = INLINE_CODE.sub("", page.prose)
    for target in LINK.findall(prose):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        if not file_part:
            if anchor not in anchors(page):
                broken.append(f"{page.name}: {target} (no heading #{anchor})")
            continue
        linked = (page.path.parent / file_part).resolve()
        if not linked.exists():
            broken.append(f"{page.name}: {target} (no such file)")
            continue
        if anchor and (linked.suffix != ".md" or anchor not in anchors(load(linked))):
            broken.append(f"{page.name}: {target} (no heading #{anchor})")
    return broken


def looks_like_repo_path(code: str) -> bool:
    if not PATH_CHARS.fullmatch(code):
        return False
    return code in REPO_FILES or code.startswith(REPO_ROOTS)


def missing_paths(page: Page) -> list[str]:
    missing = []
    for code in page.inline_code:
        if not looks_like_repo_path(code) or code.startswith(GENERATED):
            continue
        relative = code.rstrip("/")
        found = any(ROOT.glob(relative)) if "*" in relative else (ROOT / relative).exists()
        if not found:
            missing.append(f"{page.name}: `{code}`")
    return missing


def command_lines(page: Page) -> list[str]:
    """`fedge ...` as shown: each code block's commands (continuation lines
    joined, comments dropped) and every inline span that starts with one."""
    lines = []
    for block in page.blocks:
        for line in block.replace("\\\n", " ").splitlines():
            if "fedge" not in line:
                continue  # prose or a formula in a block, not a command
            words = shlex.split(line, comments=True)
            for start, word in enumerate(words):
                if word == "fedge" or word.endswith("/fedge"):
                    lines.append(" ".join(words[start:]))
                    break
    lines += [code for code in page.inline_code if code.startswith("fedge ")]
    return lines


def command_errors(line: str) -> list[str]:
    words = line.split()
    if len(words) < 2 or words[1].startswith("-"):
        return []  # `fedge --help`
    name = words[1]
    command = main.commands.get(name)
    if command is None:
        return [f"{line!r}: no subcommand {name!r}"]
    known = {"-h", "--help"}
    for param in command.params:
        if isinstance(param, click.Option):
            known.update(param.opts, param.secondary_opts)
    # Options end where the next shell command starts.
    own = re.split(r"\s(?:\||&&|;)\s", " ".join(words[2:]))[0]
    return [
        f"{line!r}: {name} has no option {option}"
        for option in OPTION.findall(own)
        if option not in known
    ]


def missing_scripts(page: Page) -> list[str]:
    return [
        f"{page.name}: bash {script}"
        for script in BASH_SCRIPT.findall(page.text)
        if not (ROOT / script).is_file()
    ]


def missing_modules(page: Page) -> list[str]:
    missing = []
    for module in PYTHON_MODULE.findall(page.text):
        if not (ROOT / (module.replace(".", "/") + ".py")).is_file():
            missing.append(f"{page.name}: python -m {module}")
    for code in page.inline_code:
        for dotted in DOTTED_NAME.findall(code):
            if dotted.endswith((".js", ".ts")):
                continue  # the web SDK's files (fedge.js, fedge.d.ts), not Python modules
            if not dotted_name_exists(dotted):
                missing.append(f"{page.name}: {dotted}")
    return missing


def dotted_name_exists(dotted: str) -> bool:
    """A module, or a name defined at the top of the longest module prefix
    (found without importing the module itself, so no TensorFlow)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        module = ".".join(parts[:cut])
        try:
            spec = importlib.util.find_spec(module)
        except ModuleNotFoundError:
            continue
        if spec is None:
            continue
        rest = parts[cut:]
        if not rest:
            return True
        if spec.origin is None or not spec.origin.endswith(".py"):
            return False
        source = Path(spec.origin).read_text(encoding="utf-8")
        defined = rf"^(?:class|def)\s+{rest[0]}\b|^{rest[0]}\s*[:=]"
        return re.search(defined, source, re.MULTILINE) is not None
    return False


def openapi_routes() -> set[tuple[str, str]]:
    """(METHOD, path) for every operation in server/openapi.yaml, with each
    path parameter as ``{}`` (the docs may name them more shortly)."""
    routes = set()
    path = None
    for line in (ROOT / "server" / "openapi.yaml").read_text(encoding="utf-8").splitlines():
        if found := OPENAPI_PATH.match(line):
            path = re.sub(r"\{[^}]*\}", "{}", found.group(1))
        elif (method := OPENAPI_METHOD.match(line)) and path is not None:
            routes.add((method.group(1).upper(), path))
    return routes


def unknown_routes(page: Page, routes: set[tuple[str, str]]) -> list[str]:
    unknown = []
    for code in page.inline_code:
        if found := ROUTE.match(code):
            path = re.sub(r"\{[^}]*\}", "{}", found.group(2).split("?")[0])
            if (found.group(1), path) not in routes:
                unknown.append(f"{page.name}: {code}")
    return unknown


@pytest.fixture(scope="module")
def pages() -> list[Page]:
    return [load(path) for path in PAGES]


def test_there_are_docs_pages_beside_the_readme() -> None:
    assert (ROOT / "docs" / "index.md") in PAGES


def test_every_relative_link_reaches_a_file_and_heading(pages: list[Page]) -> None:
    assert [broken for page in pages for broken in broken_links(page)] == []


def test_every_repository_path_in_backticks_exists(pages: list[Page]) -> None:
    assert [missing for page in pages for missing in missing_paths(page)] == []


def test_every_fedge_command_shown_has_its_subcommand_and_options(pages: list[Page]) -> None:
    lines = [line for page in pages for line in command_lines(page)]

    assert lines, "the docs show no fedge command"
    assert [error for line in lines for error in command_errors(line)] == []


def test_every_script_named_exists(pages: list[Page]) -> None:
    assert [missing for page in pages for missing in missing_scripts(page)] == []


def test_every_module_named_exists(pages: list[Page]) -> None:
    assert [missing for page in pages for missing in missing_modules(page)] == []


def test_every_route_shown_is_in_the_openapi_document(pages: list[Page]) -> None:
    routes = openapi_routes()

    assert ("POST", "/v1/rounds/{}/updates") in routes
    assert [unknown for page in pages for unknown in unknown_routes(page, routes)] == []


def test_the_checks_catch_what_they_are_for() -> None:
    """Each check flags a broken example, so a green run means something."""
    page = Page(
        path=ROOT / "docs" / "broken.md",
        text="# Title\n\n[gone](nowhere.md) [up](../README.md#no-such-heading) "
        "[here](#title) [there](#elsewhere) `server/no_such_module.py` `fedge.server.no_such`\n"
        "`GET /v1/devices/{id}` `DELETE /v1/devices/{id}`\n\n"
        "```bash\nfedge serve --no-such-option\nfedge frobnicate\nbash scripts/nope.sh\n```\n",
    )

    assert broken_links(page) == [
        "docs/broken.md: nowhere.md (no such file)",
        "docs/broken.md: ../README.md#no-such-heading (no heading #no-such-heading)",
        "docs/broken.md: #elsewhere (no heading #elsewhere)",
    ]
    assert missing_paths(page) == ["docs/broken.md: `server/no_such_module.py`"]
    assert [error for line in command_lines(page) for error in command_errors(line)] == [
        "'fedge serve --no-such-option': serve has no option --no-such-option",
        "'fedge frobnicate': no subcommand 'frobnicate'",
    ]
    assert missing_scripts(page) == ["docs/broken.md: bash scripts/nope.sh"]
    assert missing_modules(page) == ["docs/broken.md: fedge.server.no_such"]
    assert unknown_routes(page, openapi_routes()) == ["docs/broken.md: DELETE /v1/devices/{id}"]

"""The README and docs/ run as written, and ``--help`` reads as plain text.

Every ```bash and ```python block of README.md and docs/*.md runs, in order, file by file, in a fresh copy of the
repository (its tracked files, and new ones git does not ignore), as a reader after the README's two set-up commands
would run it: ``.venv`` is the running interpreter's prefix, ``../shared/data`` the real data, the ONNX cache and the
Hub's cache empty, nothing on PATH but the system's (a bare ``zoo`` fails, as it would for the reader), no network.
Every command runs at smoke-test size, through the one variable the README names: ZOO_SMOKE=1.

Left out by rule, not by a list: ```text blocks (output, not commands: every fence says which it is), and the
blocks CI runs itself: the set-up commands, which create the venv these tests run in (.ci/run runs the README's
test command verbatim, which a test here checks), and the ones that run pytest, which would run the suite inside
itself. A block that names ../shared/data runs where the real data is and is skipped without it.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO, real_data_dir

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
RUNNABLE = ("bash", "python")
FENCES = (*RUNNABLE, "text")
"""The fences a document may use: a command runs, a ```text block is shown as it is."""
CI_OWN = ("python3 -m venv", "-m pytest")
"""What only CI runs: a block with either is the set-up (the venv these tests run in) or the suite itself."""
DATA = "../shared/data"
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.M | re.S)
HELP_WIDTH = 100


@dataclass(frozen=True)
class Block:
    lang: str
    code: str
    line: int  # of the opening fence, 1-based


def blocks(text: str) -> list[Block]:
    """Every fenced block of a markdown text, in order."""
    return [Block(m[1].strip(), m[2], text.count("\n", 0, m.start()) + 1) for m in FENCE.finditer(text)]


def runnable(text: str, data: bool) -> tuple[list[Block], list[Block]]:
    """The blocks to run, and those skipped for want of the real data; CI's own and ```text blocks are neither."""
    run = [b for b in blocks(text) if b.lang in RUNNABLE and not any(c in b.code for c in CI_OWN)]
    return [b for b in run if data or DATA not in b.code], [b for b in run if not data and DATA in b.code]


def run_blocks(name: str, text: str, cwd: Path, env: dict[str, str], data: bool = True) -> list[str]:
    """Run the blocks of ``text`` in order in ``cwd``; the failures, each with its place, code and output. A failing
    line of a bash block stops it (bash -e); the next blocks still run, as a reader would go on."""
    failures = []
    for block in runnable(text, data)[0]:
        command = (["bash", "-euo", "pipefail", "-c", block.code] if block.lang == "bash" else
                   [str(cwd / ".venv" / "bin" / "python"), "-c", block.code])
        try:
            done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
        except subprocess.TimeoutExpired as e:
            failures.append(f"{name}:{block.line}: ```{block.lang} block ran past {e.timeout:.0f} s\n{block.code}")
            continue
        if done.returncode:
            output = (done.stdout + done.stderr)[-3000:]
            failures.append(f"{name}:{block.line}: ```{block.lang} block exited {done.returncode}\n{block.code}"
                            f"--- its output, the end ---\n{output}")
    return failures


def reader_env(root: Path) -> dict[str, str]:
    """The environment of a reader in ``root`` (the copy's parent): no venv on PATH, nothing of zoo's set but
    ZOO_SMOKE, empty caches, offline."""
    venv_bin = str(Path(sys.prefix) / "bin")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZOO_", "HF_", "VIRTUAL_ENV"))}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p and p != venv_bin)
    env.update(ZOO_SMOKE="1", ZOO_CACHE_DIR=str(root / "cache"), HF_HOME=str(root / "hf"), HF_HUB_OFFLINE="1",
               MPLBACKEND="Agg")
    return env


def fresh_copy(root: Path) -> Path:
    """The repository as a fresh clone has it, in ``root/repo``, with ``.venv`` (this interpreter's prefix) and
    ``root/shared/data`` (the real data, when it is here) beside it."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True)
    if listed.returncode:
        pytest.skip(f"not a git checkout: {listed.stderr.strip()}")
    repo = root / "repo"
    for name in filter(None, listed.stdout.split("\0")):
        if (REPO / name).is_file():  # a tracked file deleted in the working tree is not in a clone of it
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, repo / name)
    (repo / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    if real_data_dir() is not None:
        (root / "shared").mkdir()
        (root / "shared" / "data").symlink_to(real_data_dir(), target_is_directory=True)
    return repo


# ---------------------------------------------------------------------------- every block runs


RUNS_AT_ONCE = 2
"""Documents run side by side: a reader's command mostly keeps one core busy (imports, data, writing files)."""


def run_doc(doc: Path, root: Path) -> list[str]:
    """The failures of ``doc``'s blocks, run in a fresh copy of the repository under ``root``, with its share of the
    cores' torch threads (as tests/conftest.py gives each pytest-xdist worker)."""
    threads = str(max(1, len(os.sched_getaffinity(0)) // RUNS_AT_ONCE))
    return run_blocks(str(doc.relative_to(REPO)), doc.read_text(), fresh_copy(root),
                      {**reader_env(root), "OMP_NUM_THREADS": threads}, real_data_dir() is not None)


@pytest.fixture(scope="module")
def doc_runs(request, tmp_path_factory):
    """The selected documents' runs, RUNS_AT_ONCE at a time, the longest first; each test waits for its own."""
    if not (Path(sys.prefix) / "bin" / "zoo").is_file():
        pytest.skip(f"zoo's command is not installed in {sys.prefix}, which the blocks' .venv stands for")
    selected = [item.callspec.params["doc"] for item in request.session.items
                if item.originalname == "test_every_block_runs_as_written"]
    docs = sorted((d for d in selected if runnable(d.read_text(), real_data_dir() is not None)[0]),
                  key=lambda d: -sum(len(b.code) for b in runnable(d.read_text(), True)[0]))
    with ThreadPoolExecutor(max_workers=RUNS_AT_ONCE) as pool:
        runs = {doc: pool.submit(run_doc, doc, tmp_path_factory.mktemp(doc.stem)) for doc in docs}
        yield runs
        for run in runs.values():
            run.cancel()


@pytest.mark.slow
@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_block_runs_as_written(doc, doc_runs):
    if doc not in doc_runs:
        skipped = runnable(doc.read_text(), False)[1]
        pytest.skip(f"every runnable block of {doc.name} needs {DATA}" if skipped else f"{doc.name} has no commands")
    failures = doc_runs[doc].result()
    assert not failures, "\n\n".join(failures)


def test_a_failing_block_is_reported_and_the_others_run_in_order(tmp_path):
    """The negative control: the runner reports a failing command with its place, and stops its block there."""
    (tmp_path / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    text = ("# made up\n\n```bash\necho ok > made.txt\n```\n\n```text\nexit 1\n```\n\n"
            "```python\nimport pathlib\nassert pathlib.Path('made.txt').read_text() == 'ok\\n'\n```\n\n"
            "```bash\nfalse\necho after > after.txt\n```\n\n```python\nraise SystemExit('python failed')\n```\n")
    failures = run_blocks("made.md", text, tmp_path, reader_env(tmp_path))
    assert [f.split("\n")[0] for f in failures] == ["made.md:16: ```bash block exited 1",
                                                    "made.md:21: ```python block exited 1"]
    assert "python failed" in failures[1] and not (tmp_path / "after.txt").exists()
    assert run_blocks("fine.md", text[:text.index("```bash\nfalse")], tmp_path, reader_env(tmp_path)) == []


def test_a_bare_zoo_fails_for_the_reader(tmp_path):
    """The reader's PATH has no venv: a block that forgets .venv/bin/ fails here as it would there."""
    (tmp_path / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    assert shutil.which("zoo", path=reader_env(tmp_path)["PATH"]) is None
    assert run_blocks("bare.md", "```bash\nzoo --version\n```\n", tmp_path, reader_env(tmp_path))
    assert run_blocks("venv.md", "```bash\n.venv/bin/zoo --version\n```\n", tmp_path, reader_env(tmp_path)) == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_fence_says_whether_it_is_a_command(doc):
    """A block the runner would not see (```sh, or no language) cannot hide a command that does not work."""
    found = blocks(doc.read_text())
    assert all(b.lang in FENCES for b in found), [(b.line, b.lang) for b in found if b.lang not in FENCES]
    assert doc.read_text().count("```") == 2 * len(found), "an unclosed or stray fence"


def test_ci_runs_the_readmes_set_up_and_test_command():
    """The set-up blocks are left to CI: .ci/run must run the README's test command as it is written."""
    setup = [b.code.strip() for b in blocks((REPO / "README.md").read_text()) if "python3 -m venv" in b.code]
    assert len(setup) == 2 and setup[1].endswith("-m pytest -q")
    assert setup[1] in (REPO / ".ci" / "run").read_text().splitlines()


def table(text: str, header: str) -> list[str]:
    """The markdown table whose first line starts with ``header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end]


def test_the_readmes_bench_table_is_the_reports():
    readme = table((REPO / "README.md").read_text(), "| model | threads |")
    assert readme == table((REPO / "reports" / "cpu-bench" / "results.md").read_text(), "| model | threads |")


# ---------------------------------------------------------------------------- --help


def parsers() -> dict[str, object]:
    """``zoo`` and every subcommand's parser, zoo's own and the plugins' (export, bench), as the CLI builds them."""
    from zoo.cli import build_parser, plugin_parser, plugins
    from zoo.cli.commands import add_commands

    top = build_parser(add_commands)
    sub = next(a for a in top._actions if a.choices and "train" in a.choices)
    found = {"zoo": top, **{f"zoo {name}": p for name, p in sub.choices.items() if name not in plugins()}}
    return {**found, **{f"zoo {name}": plugin_parser(name) for name in plugins()}}


def examples(help_text: str) -> list[str]:
    """The example command lines of a help text, each rejoined where the layout wrapped it, comments dropped."""
    section = help_text.split("\nexamples:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    lines: list[str] = []
    for line in section:
        if line.startswith("   ") and lines:  # wrapped: deeper than an example's two spaces
            lines[-1] += " " + line.strip()
        else:
            lines.append(line.strip())
    return [line.split("  #")[0].strip() for line in lines]


def test_every_help_is_plain_text_within_100_columns_with_examples(monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # a wide terminal: the layout still stops at 100
    helps = {name: parser.format_help() for name, parser in parsers().items()}
    assert {"zoo", "zoo train", "zoo export", "zoo bench"} <= set(helps) and len(helps) >= 12
    for name, text in helps.items():
        wide = [line for line in text.splitlines() if len(line) > HELP_WIDTH]
        assert not wide, f"{name} --help: {len(wide)} lines over {HELP_WIDTH} columns, e.g. {wide[0]!r}"
        assert not re.search(r"`|:(func|class|meth|data|mod|attr|exc):", text), f"{name} --help shows markup"
        assert "\nexamples:\n  zoo " in text, f"{name} --help has no examples section"


def unparsed_examples(help_text: str, all_parsers: dict) -> list[str]:
    """The examples of ``help_text`` that their command's parser refuses (each is parsed as ``zoo`` would)."""
    from zoo.cli import plugins

    refused = []
    for line in examples(help_text):
        argv = shlex.split(line)[1:]
        if "--help" in argv:
            continue
        parser, args = (all_parsers[f"zoo {argv[0]}"], argv[1:]) if argv[0] in plugins() else (all_parsers["zoo"], argv)
        try:
            parser.parse_args(args)
        except SystemExit:
            refused.append(line)
    return refused


def test_every_help_example_parses(capsys):
    """Each example is a command its parser accepts: a typo in an option, a wrong choice, fails here."""
    all_parsers = parsers()
    refused = {name: unparsed_examples(p.format_help(), all_parsers) for name, p in all_parsers.items()}
    assert not any(refused.values()), (refused, capsys.readouterr().err)


def test_the_example_check_catches_a_wrong_option():
    """The negative control of the test above, on a made-up help text."""
    made_up = "usage: ...\n\nexamples:\n  zoo list 'vgg*'\n  zoo train resnet18 --epochz 3    # a typo\n" \
              "  zoo bench resnet18 --rounds\n      two\n  zoo export resnet18 --out r.onnx\n\nexit status: ..."
    assert unparsed_examples(made_up, parsers()) == ["zoo train resnet18 --epochz 3", "zoo bench resnet18 --rounds two"]

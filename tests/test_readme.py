"""The README's commands: every ``python -m`` line of its code blocks and its command table parses with the
command's real parser, and the quick start, the server with its curl call and compare run on the tiny
bundle, so the README cannot go stale."""

import json
import re
import shlex
import subprocess

import pytest

from runtime.images import list_images
from tests.conftest import ROOT, run_module
from tests.test_cli import _parsers
from tests.test_serve import start_server, stop

README = (ROOT / "README.md").read_text()


def readme_commands() -> list[str]:
    """Every ``python -m ...`` command of the README: code-block lines and backticked text."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        found += [line.split("  #")[0].strip() for line in block.splitlines() if "python -m " in line]
    found += re.findall(r"`(python -m [^`]+)`", README)
    return [c[c.index("python -m "):] for c in found]


def parse(command: str):
    """The command's arguments as its own parser reads them (SystemExit on a flag it does not know)."""
    module, *argv = shlex.split(command.removeprefix("python -m "))
    parsers = _parsers()
    if module == "train" and argv and f"train {argv[0]}" in parsers:
        return parsers[f"train {argv[0]}"].parse_args(argv[1:])
    return parsers["train " if module == "train" else module].parse_args(argv)


def test_the_readme_has_the_commands_a_user_needs():
    commands = readme_commands()
    assert len(README.splitlines()) <= 300
    for needed in ("runtime.predict", "runtime.serve", "runtime.package lambda", "runtime.package install", "convert",
                   "runtime.compare", "benchmarks", "train"):
        assert any(c.startswith(f"python -m {needed}") for c in commands), needed
    assert "source .venv/bin/activate" in README and "curl" in README and "docs/" in README


@pytest.mark.parametrize("command", readme_commands())
def test_every_readme_command_parses_with_its_real_parser(command):
    try:
        parse(command)
    except SystemExit as e:  # --help exits 0; a flag the command does not know exits 2
        assert e.code == 0, command


def test_the_quick_start_the_server_and_compare_run_as_the_readme_says(converted, tiny_data, tmp_path):
    image = list_images(tiny_data / "test")[0]
    res = run_module("runtime.predict", image, "--model", converted)
    assert res.returncode == 0 and re.fullmatch(rf"{re.escape(str(image))}: \w+ \(\d\.\d{{3}}\)  \[.*\]\n", res.stdout)
    assert res.stderr.startswith("model: ") and "chosen: " in res.stderr and "1 image: answered" in res.stderr
    assert re.search(r"\{.*\"label\".*\}", README) and "1 image: answered" in README
    proc, base = start_server(converted)
    try:
        curl = subprocess.run(["curl", "-s", "-X", "POST", "--data-binary", f"@{image}", f"{base}/predict"],
                              capture_output=True, text=True, timeout=60)
    finally:
        stop(proc)
    answer = json.loads(curl.stdout)
    assert answer["label"] in {"blue", "green", "red"} and set(answer) >= {"label", "score"}
    res = run_module("runtime.compare", converted / "model.keras", converted, "--images", tiny_data / "test")
    assert re.search(r"\d+\.\d% \[\d+\.\d%-\d+\.\d%\] of 18 ", res.stdout)  # 18 images cannot show 98%:
    assert res.returncode == 1 and "(189 images are needed to show it)" in res.stdout

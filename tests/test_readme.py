"""The README's two set-up commands are the ones CI and users run."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def setup_commands():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_readme_has_exactly_two_setup_commands_using_the_constraints():
    commands = setup_commands()
    assert len(commands) == 2
    assert all("-c constraints.txt" in c for c in commands)
    assert "examples/" in commands[0] and (ROOT / commands[0].split("python ")[-1].split()[0]).is_file()


def test_ci_runs_the_readme_test_command():
    assert setup_commands()[1] in (ROOT / ".ci" / "run").read_text()


def test_torch_is_pinned_in_the_constraints():
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text().split()


def test_no_file_cites_a_reference_outside_the_repository():
    # The team's research notes are not shipped; the project's own notes with primary sources are docs/measurement.md.
    cited = [
        path.relative_to(ROOT)
        for folder in ("tracker", "integrations", "tests", "bench", "examples", "docs")
        for path in (ROOT / folder).rglob("*")
        if path.suffix in (".py", ".md") and path != Path(__file__)
        if "MEASUREMENT" in path.read_text(encoding="utf-8")
    ]
    assert cited == []
    assert "MEASUREMENT" not in (ROOT / "README.md").read_text(encoding="utf-8")
    assert "MEASUREMENT" not in (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")

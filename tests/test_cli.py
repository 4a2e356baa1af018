import subprocess
import sys

import pytest
from click.testing import CliRunner

from harness.cli import COMMANDS, main


def test_top_level_help_lists_commands_without_importing_them() -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from harness.cli import main\n"
        "r = CliRunner().invoke(main, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "heavy = [m for m in ('torch', 'transformers', 'open_clip', 'mmdet', 'numpy', 'harness.commands.evaluate')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "print(r.output)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for name in COMMANDS:
        assert name in out


@pytest.mark.parametrize("args", [[name] for name in COMMANDS] + [["prompts", "geneval"]])
def test_every_subcommand_has_help(args: list[str]) -> None:
    result = CliRunner().invoke(main, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_subcommand_help_does_not_import_models() -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from harness.cli import main\n"
        "for cmd in ('eval', 'rescore', 'summary', 'doctor', 'prompts'):\n"
        "    r = CliRunner().invoke(main, [cmd, '--help'])\n"
        "    assert r.exit_code == 0, r.output\n"
        "heavy = [m for m in ('torch', 'transformers', 'open_clip', 'mmdet') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["evaluate-everything"])
    assert result.exit_code == 2
    assert "No such command" in result.output

from typer.testing import CliRunner

from factbridge import __version__
from factbridge.cli import app


def test_version_command() -> None:
    result = CliRunner().invoke(app, ["version"])
    assert result.exit_code == 0
    assert __version__ in result.output

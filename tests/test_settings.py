from pathlib import Path

import pytest

from factbridge.errors import ConfigError
from factbridge.settings import Settings, load_settings, setting_docs


def test_precedence_file_env_cli(tmp_path: Path) -> None:
    cfg = tmp_path / "fb.toml"
    cfg.write_text('[factbridge]\norg = "from-file"\nmatch_top_k = 7\nembed_threads = 1\n')
    s = load_settings(cfg, env={"FACTBRIDGE_ORG": "from-env", "FACTBRIDGE_EMBED_THREADS": "3"}, overrides={"embed_threads": "4"})
    assert (s.org, s.match_top_k, s.embed_threads) == ("from-env", 7, 4)


def test_bad_settings_name_the_source(tmp_path: Path) -> None:
    cfg = tmp_path / "fb.toml"
    cfg.write_text("nope = 1\n")
    with pytest.raises(ConfigError, match="unknown setting 'nope'"):
        load_settings(cfg, env={})
    with pytest.raises(ConfigError, match="FACTBRIDGE_MATCH_TOP_K"):
        load_settings(env={"FACTBRIDGE_MATCH_TOP_K": "many"})
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.toml", env={})


def test_every_setting_is_documented() -> None:
    docs = setting_docs()
    assert {name for name, _, _ in docs} == set(Settings.__dataclass_fields__)
    assert all(len(help_text) > 10 for _, _, help_text in docs)


def test_readme_quick_start_is_two_commands() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = readme.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    assert [line.strip() for line in block.strip().splitlines()] == ["make demo", "make test"]

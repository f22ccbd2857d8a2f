import ast
import dataclasses
from pathlib import Path

import pytest

from factbridge.errors import ConfigError
from factbridge.settings import (
    SECTION_KEYS,
    SECTION_VIEWS,
    Settings,
    load_settings,
    setting_docs,
    setting_sections,
)


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


def test_toml_sections_and_flat_names_are_the_same_setting(tmp_path: Path) -> None:
    cfg = tmp_path / "fb.toml"
    cfg.write_text('[narratives]\nsemantic_threshold = 0.5\n[triage]\nreach = 0.3\ntriage_weight_risk = 0.1\n[queue]\nqueue_batch_size = 8\n')
    s = load_settings(cfg, env={})
    assert (s.narrative_threshold, s.narratives.semantic_threshold) == (0.5, 0.5)
    assert (s.triage_weight_reach, s.triage.reach, s.triage.risk, s.queue_batch_size) == (0.3, 0.3, 0.1, 8)
    flat = tmp_path / "flat.toml"
    flat.write_text("narrative_threshold = 0.5\n")
    assert load_settings(flat, env={}).narratives == s.narratives
    assert load_settings(env={"FACTBRIDGE_NARRATIVE_THRESHOLD": "0.5"}).narratives.semantic_threshold == 0.5
    twice = tmp_path / "twice.toml"
    twice.write_text("narrative_threshold = 0.5\n[narratives]\nsemantic_threshold = 0.6\n")
    with pytest.raises(ConfigError, match="'narrative_threshold' is given twice"):
        load_settings(twice, env={})
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("[bursts]\nsemantic_threshold = 0.6\n")
    with pytest.raises(ConfigError, match=r"unknown setting 'semantic_threshold' in section \[bursts\]"):
        load_settings(wrong, env={})


def test_every_setting_has_a_section_and_each_view_reads_exactly_its_section() -> None:
    rows = setting_sections()
    assert sorted(r[2] for r in rows) == sorted(Settings.__dataclass_fields__)
    assert all(section for section, *_ in rows)
    defaults = Settings()
    for section, view in SECTION_VIEWS.items():
        keys = {key for name, (sec, key) in SECTION_KEYS.items() if sec == section}
        required = {f.name for f in dataclasses.fields(view) if f.default is dataclasses.MISSING}
        assert keys == required, section  # no view field without a setting, no setting left out
        value = getattr(defaults, section)
        assert isinstance(value, view)
        for name, (sec, key) in SECTION_KEYS.items():
            if sec == section:
                assert getattr(value, key) == getattr(defaults, name)


def test_section_views_check_their_values() -> None:
    with pytest.raises(ConfigError, match="burst_bin_hours"):
        _ = Settings(burst_bin_hours=1.5).bursts
    with pytest.raises(ConfigError, match="coordination_objects"):
        _ = Settings(coordination_objects="url,smoke").coordination
    assert Settings(coordination_objects="url, image").coordination.object_types == ("url", "image")


STAGE_MODULES = {
    "narratives": "pipeline/narratives.py", "bursts": "pipeline/bursts.py", "coordination": "pipeline/coordination.py",
    "triage": "pipeline/triage.py", "checkworthiness": "pipeline/checkworthiness.py", "linkrisk": "linkrisk/stage.py",
}


def test_no_stage_module_restates_a_setting_or_its_default() -> None:
    """The stages read `settings.<section>`; no params class, no flat stage setting read one by
    one, no field or argument named like a setting of the section that repeats its default."""
    root = Path(__file__).resolve().parent.parent / "src" / "factbridge"
    defaults = Settings()
    flat_names = {name for name, (_, key) in SECTION_KEYS.items() if name != key}  # (topic_threshold is both)
    modules = {*STAGE_MODULES.values(), "linkrisk/scoring.py", "linkrisk/resolve.py"}
    for rel in sorted(modules):
        tree = ast.parse((root / rel).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                assert not node.name.endswith(("Params", "Weights")), f"{rel}: class {node.name}"
            if isinstance(node, ast.FunctionDef):
                assert node.name != "params_from_settings", f"{rel}: {node.name}"
            if isinstance(node, ast.Attribute):
                assert node.attr not in flat_names, f"{rel}:{node.lineno}: reads settings.{node.attr}; read settings.<section> instead"
        named_defaults: list[tuple[str, ast.expr, int]] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
                named_defaults.append((node.target.id, node.value, node.lineno))
            if isinstance(node, ast.FunctionDef):
                args = node.args.args[len(node.args.args) - len(node.args.defaults):] + node.args.kwonlyargs
                values = list(node.args.defaults) + [d for d in node.args.kw_defaults if d is not None]
                named_defaults += [(a.arg, v, node.lineno) for a, v in zip(args, values, strict=False)]
        section_defaults = {(key, getattr(defaults, name)) for name, (_, key) in SECTION_KEYS.items()}
        for name, value, line in named_defaults:
            if isinstance(value, ast.Constant) and isinstance(value.value, int | float) and not isinstance(value.value, bool):
                assert (name, value.value) not in section_defaults, f"{rel}:{line}: {name} = {value.value} restates a settings.py default"


def test_settings_command_prints_every_setting_with_its_section(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from factbridge.cli import app

    result = CliRunner().invoke(app, ["--data-dir", str(tmp_path), "settings"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for section, key, name, _, _ in setting_sections():
        row = next((line for line in lines if f" {name} " in line), "")
        assert f" {section} " in row, name
        if key != name:
            assert f" {key} " in row, name


def test_narrative_memory_days_is_zero_or_a_positive_number_of_days() -> None:
    assert load_settings(env={}).narratives.memory_days == 0.0
    assert load_settings(env={"FACTBRIDGE_NARRATIVE_MEMORY_DAYS": "2.5"}).narratives.memory_days == 2.5
    for bad in ("-1", "nan"):
        with pytest.raises(ConfigError, match="narrative_memory_days must be 0"):
            _ = load_settings(env={"FACTBRIDGE_NARRATIVE_MEMORY_DAYS": bad}).narratives

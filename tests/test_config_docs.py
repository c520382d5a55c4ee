"""Config fields are documented where declared (trailing comments), and ``mmimic train --help`` lists them."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mmimic.config import field_docs, format_field_docs

REPO = Path(__file__).resolve().parents[1]


def _train_config():
    from mmimic.rl.trainer import TrainConfig

    return TrainConfig


def _posture_config():
    """The run config of ``mmimic posture`` (its module has moved before)."""
    for name in ("mmimic.envs.posture_demo", "mmimic.posture_demo"):
        try:
            return importlib.import_module(name).PostureRunConfig
        except (ImportError, AttributeError):
            continue
    pytest.skip("no PostureRunConfig found")


@pytest.mark.parametrize("schema", [_train_config, _posture_config], ids=["TrainConfig", "PostureRunConfig"])
def test_every_config_field_is_documented(schema):
    missing = _undocumented(schema())
    assert not missing, ("config fields without a trailing `# doc` comment on their declaration line:\n"
                         + "\n".join(f"  {key} ({_relative(where)})" for key, where in missing.items()))


def _undocumented(schema) -> dict[str, str]:
    """``{dotted field key: "FILE:LINE"}`` of the fields without a doc (a dict field once, not per entry)."""
    return {d.field: d.where for d in field_docs(schema) if not d.doc}


def _relative(where: str) -> str:
    path, _, line = where.rpartition(":")
    try:
        return f"{Path(path).resolve().relative_to(REPO)}:{line}"
    except ValueError:
        return where


# ------------------------------------------------------------------ field_docs on small throwaway schemas


@dataclass
class _Inner:
    """An inner section."""

    alpha: float = 0.5  # the alpha
    beta: int = 3


@dataclass
class _Base:
    """A base config."""

    # a section heading, not a doc
    size: int = 4  # how many
    name: str = ""  # what to call it
    inner: _Inner = field(default_factory=_Inner)  # the inner options
    terms: dict[str, dict[str, float]] = field(  # term -> params
        default_factory=lambda: {"a": {"weight": 0.3, "scale": 40.0}, "b": {"weight": -0.1}})
    widths: list[int] = field(default_factory=lambda: [64, 32])  # hidden widths

    def method(self) -> int:
        local: int = 1  # not a field
        return local


@dataclass
class _Derived(_Base):
    """A subclass: inherits size, name, terms and widths with their docs."""

    inner: _Inner = field(default_factory=lambda: _Inner(alpha=0.25))  # the subclass's inner options
    name: str = "derived"
    extra: bool = True  # only here


def test_undocumented_field_is_reported_empty():
    docs = {d.key: d for d in field_docs(_Base)}
    assert docs["inner.beta"].doc == ""  # the one undocumented field: the check above catches it
    assert docs["inner.alpha"].doc == "the alpha" and docs["size"].doc == "how many"
    missing = _undocumented(_Base)
    assert list(missing) == ["inner.beta"]
    path, _, line = missing["inner.beta"].rpartition(":")
    assert Path(path).resolve() == Path(__file__).resolve()
    assert Path(path).read_text().splitlines()[int(line) - 1].strip() == "beta: int = 3"


def test_field_docs_keys_defaults_and_dicts():
    docs = field_docs(_Base)
    assert [d.key for d in docs] == ["size", "name", "inner", "inner.alpha", "inner.beta", "terms",
                                     "terms.a.weight", "terms.a.scale", "terms.b.weight", "widths"]
    by_key = {d.key: d for d in docs}
    assert by_key["inner"].section and by_key["inner"].doc == "the inner options"
    assert by_key["terms"].section and by_key["terms"].doc == "term -> params"
    entry = by_key["terms.a.scale"]
    assert (entry.default, entry.type, entry.doc, entry.field) == ("40.0", "float", "term -> params", "terms")
    assert by_key["widths"].default == "[64, 32]" and by_key["name"].default == "''"
    assert by_key["size"].type == "int" and by_key["size"].default == "4"


def test_subclass_inherits_base_docs_and_redeclaration_wins():
    by_key = {d.key: d for d in field_docs(_Derived)}
    assert by_key["size"].doc == "how many"  # inherited: the base's source
    assert by_key["terms.b.weight"].doc == "term -> params"
    assert by_key["inner"].doc == "the subclass's inner options"  # redeclared with a comment: the subclass's
    assert by_key["inner.alpha"].default == "0.25"  # the subclass's default factory
    # redeclared without a comment: the base's doc, the subclass's default
    assert by_key["name"].doc == "what to call it" and by_key["name"].default == "derived"
    assert by_key["extra"].doc == "only here"
    assert "local" not in by_key


def test_format_groups_by_section():
    text = format_field_docs(_Derived, width=100)
    lines = text.splitlines()
    assert lines[0] == "top level:"
    assert any(line.startswith("  size = 4") and line.endswith("how many") for line in lines)
    assert any(line.startswith("inner: _Inner") and "the subclass's inner options" in line for line in lines)
    assert text.count("term -> params") == 1  # a dict field's doc once, on its own line
    assert "  terms.a.weight = 0.3" in lines


# ------------------------------------------------------------------ mmimic train --help


def _mmimic_script() -> str:
    script = shutil.which("mmimic")
    local = Path(sys.executable).parent / "mmimic"
    if local.is_file():  # the venv running the tests, before whatever else is on PATH
        script = str(local)
    if not script:
        pytest.skip("no installed `mmimic` script")
    return script


def test_train_help_lists_config_keys_with_docs():
    out = subprocess.run([_mmimic_script(), "train", "--help"], capture_output=True, text=True, timeout=300,
                         cwd=REPO, env={**os.environ, "COLUMNS": "120"})
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "--resume" in text and "--config" in text and "KEY=VALUE" in text  # the options are still there
    assert "ppo.lr=1e-4" in text  # the line on overriding
    flat = " ".join(text.split())  # docs wrap over lines
    docs = {d.key: d.doc for d in field_docs(_train_config())}
    checked = 0
    for key in ("ppo.lr", "ppo.gamma", "env.model", "env.num_envs"):
        assert f"  {key} = " in text
        if docs[key]:  # an undocumented one fails test_every_config_field_is_documented
            assert " ".join(docs[key].split()) in flat
            checked += 1
    assert checked
    assert "  env.task." in text


def test_top_level_help_does_not_import_the_trainer():
    # the train epilog (which imports the trainer, seconds) is built only for `mmimic train --help`
    code = ("import sys\nfrom mmimic.cli import build_parser\nbuild_parser().format_help()\n"
            "assert 'mmimic.rl.trainer' not in sys.modules, 'mmimic --help imported the trainer'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr

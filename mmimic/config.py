"""Experiment configs: a structured dataclass schema, merged with a YAML file and key=value overrides.

Every config field is documented by the trailing ``# comment`` on its declaration line, e.g.
``lr: float = 3e-4  # Adam step size``. ``field_docs`` reads those comments back (``inspect.getsource`` +
``tokenize``) so that ``mmimic train --help`` can list every key with its default and its doc, and a
test can insist that no field goes undocumented. A comment on a line of its own above a group of
fields is a section heading in the source, not a field's doc.

Why hand-written: tyro and simple-parsing both read field docs from comments, but tyro only in a
private module (``tyro._docstrings``) and simple-parsing as part of building its own argparse CLI from
the dataclasses, which would replace (or sit awkwardly next to) our omegaconf ``key=value`` overrides;
either would also be a dependency for ~100 lines of code.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import inspect
import io
import textwrap
import tokenize
from pathlib import Path

import yaml  # omegaconf's own dependency
from omegaconf import OmegaConf


def load_config(schema: type, path: str | None = None, overrides: list[str] | tuple[str, ...] = (),
                text: str | None = None, where: str = "the config text"):
    """Defaults of ``schema``, then the YAML at ``path`` (or the YAML ``text``), then dotted ``key=value``
    overrides.

    Unknown keys and wrong types fail with omegaconf's message, which names the key.
    Keys of an earlier layout are converted first, with a warning, if the schema says how
    (``schema.upgrade_yaml(node, where)``; e.g. a run's old ``config.yaml`` being resumed).
    """
    cfg = OmegaConf.structured(schema)
    upgrade = getattr(schema, "upgrade_yaml", None)
    if path:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such experiment config")
        data = OmegaConf.load(path)
        cfg = OmegaConf.merge(cfg, upgrade(data, str(path)) if upgrade else data)
    if text is not None:  # YAML text, e.g. the config a checkpoint carries (``where`` names it in messages)
        data = OmegaConf.create(text)
        cfg = OmegaConf.merge(cfg, upgrade(data, where) if upgrade else data)
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ValueError(f"overrides must be key=value, got {bad}")
    given = OmegaConf.from_dotlist(list(overrides))
    cfg = OmegaConf.merge(cfg, upgrade(given, "the overrides") if upgrade else given)
    return OmegaConf.to_object(cfg)


def to_yaml(cfg) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


# ---------------------------------------------------------------------------------------- field docs


@dataclasses.dataclass(frozen=True)
class FieldDoc:
    """One config key, as ``field_docs`` lists it."""

    key: str  # dotted key, as given on the command line: "ppo.lr", "env.task.rewards.site_pos.weight"
    type: str  # the declared type as written ("float | None"); for a dict entry, its value's type
    default: str  # the default as YAML-ish text ("0.0003", "null", "[512, 256]"); "" for a section
    doc: str  # the declaration's trailing comment ("" when it has none)
    field: str  # dotted key of the declared field; differs from ``key`` only for the entries of a dict field
    section: bool = False  # a nested config or a dict field: a heading, its keys follow
    where: str = ""  # "FILE:LINE" of the declaration that gave the doc (the nearest one if none has a doc)


def field_docs(schema) -> list[FieldDoc]:
    """Every key of the dataclass ``schema`` (a type or an instance), depth first in declaration order.

    A field whose default is a dataclass (its ``default_factory``'s) is a section followed by that
    dataclass's keys; a dict default is a section followed by one key per (nested) entry, each carrying
    the dict field's doc; other defaults (lists included) are values. A field's doc is the trailing
    comment of its declaration in the class that declares it (a redeclaration in a subclass wins; one
    without a comment keeps the base class's doc).
    """
    if not dataclasses.is_dataclass(schema):
        raise TypeError(f"field_docs needs a dataclass or dataclass instance, got {schema!r}")
    out: list[FieldDoc] = []
    _walk(schema, "", out)
    return out


def _walk(obj, prefix: str, out: list[FieldDoc]) -> None:
    cls = obj if isinstance(obj, type) else type(obj)
    for f in dataclasses.fields(cls):
        key, type_name = prefix + f.name, _type_name(f.type)
        doc, where = _field_doc(cls, f.name)
        value = _default(obj, f)
        if dataclasses.is_dataclass(value):
            out.append(FieldDoc(key, type_name, "", doc, key, section=True, where=where))
            _walk(value, key + ".", out)
        elif isinstance(value, dict) and value:
            out.append(FieldDoc(key, type_name, "", doc, key, section=True, where=where))
            _walk_dict(value, out, FieldDoc(key, type_name, "", doc, key, where=where))
        else:
            out.append(FieldDoc(key, type_name, _yamlish(value), doc, key, where=where))


def _walk_dict(mapping: dict, out: list[FieldDoc], parent: FieldDoc) -> None:
    for name, value in mapping.items():
        entry = dataclasses.replace(parent, key=f"{parent.key}.{name}", type=type(value).__name__,
                                    default=_yamlish(value))
        if isinstance(value, dict) and value:
            _walk_dict(value, out, entry)
        else:
            out.append(entry)


_NO_DEFAULT = object()


def _default(obj, f: dataclasses.Field):
    """The field's value in ``obj`` (an instance), else its declared default (or a factory's product)."""
    if not isinstance(obj, type):
        return getattr(obj, f.name)
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return _NO_DEFAULT


def _yamlish(value) -> str:
    if value is _NO_DEFAULT:
        return "???"  # omegaconf's "missing"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, str):
        try:
            plain = value != "" and yaml.safe_load(value) == value
        except yaml.YAMLError:
            plain = False
        return value if plain else "'" + value.replace("'", "''") + "'"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yamlish(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yamlish(v)}" for k, v in value.items()) + "}"
    return repr(value) if isinstance(value, (int, float)) else str(value)


def _type_name(tp) -> str:
    if isinstance(tp, str):  # `from __future__ import annotations`: the annotation as written
        return tp
    if isinstance(tp, type) and not getattr(tp, "__args__", None):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _field_doc(cls: type, name: str) -> tuple[str, str]:
    """``(doc, "FILE:LINE")``: the trailing comment of ``name``'s declaration in the nearest class of the
    MRO that declares it with one (else no doc, and where the nearest declaration is)."""
    first = None
    for klass in cls.__mro__:
        if name in inspect.get_annotations(klass):
            doc, where = _class_comments(klass).get(name, ("", ""))
            if doc:
                return doc, where
            first = first if first is not None else where
    return "", first or ""


_PRAGMAS = ("noqa", "type:", "pragma", "fmt:", "pylint:")


@functools.lru_cache(maxsize=None)
def _class_comments(cls: type) -> dict[str, tuple[str, str]]:
    """``{field: (trailing comment, "FILE:LINE")}`` for the annotated names directly in ``cls``'s body."""
    try:
        lines, first_line = inspect.getsourcelines(cls)
        path = inspect.getsourcefile(cls) or "?"
    except (OSError, TypeError):  # no source: built at run time, or only bytecode shipped
        return {}
    source = textwrap.dedent("".join(lines))
    docs: dict[str, tuple[str, str]] = {}
    depth, at_line_start, current, comments = 0, True, None, []
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return {}
    for i, tok in enumerate(tokens):
        if tok.type == tokenize.INDENT:
            depth += 1
        elif tok.type == tokenize.DEDENT:
            depth -= 1
        elif tok.type == tokenize.NEWLINE:  # end of a logical line (statement)
            if current is not None:
                docs[current.string] = (" ".join(comments), f"{path}:{first_line + current.start[0] - 1}")
            at_line_start, current, comments = True, None, []
            continue
        elif tok.type == tokenize.COMMENT:
            text = tok.string.lstrip("#").strip()
            if current is not None and text and not text.startswith(_PRAGMAS):
                comments.append(text)
        elif tok.type == tokenize.NL:
            pass
        elif at_line_start:
            at_line_start = False
            # a field: `name: type ...` directly in the class body (depth 1; methods' bodies are deeper)
            nxt = tokens[i + 1] if i + 1 < len(tokens) else None
            if depth == 1 and tok.type == tokenize.NAME and nxt is not None and nxt.string == ":":
                current = tok
    return docs


def format_field_docs(schema, width: int = 100) -> str:
    """``field_docs(schema)`` as text: ``key = default   doc`` lines, the top-level values first, then
    one block per top-level section; a nested section or dict field is a ``key:`` line with its doc."""
    docs = field_docs(schema)
    top = [d for d in docs if "." not in d.key and not d.section]
    blocks = [("", top)] if top else []
    for head in (d for d in docs if "." not in d.key and d.section):
        blocks.append((head, [d for d in docs if d.key.startswith(head.key + ".")]))

    def label(d: FieldDoc) -> str:
        return f"  {d.key}:" if d.section else f"  {d.key} = {d.default}"

    # the doc column: after the longest label that has a doc beside it, but leaving the docs half the width
    shown = [len(label(d)) for d in docs if d.key == d.field]
    col = min(max(shown, default=0), max(24, width // 2 - 2)) + 2
    wrap_width = max(width - col, 20)
    lines: list[str] = []
    for head, entries in blocks:
        if lines:
            lines.append("")
        if head:
            lines.append(f"{head.key}: {head.type}" + (f" - {head.doc}" if head.doc else ""))
        else:
            lines.append("top level:")
        for d in entries:
            doc = d.doc if d.key == d.field else ""  # a dict field's entries: its doc is on its own line
            text = label(d)
            parts = textwrap.wrap(doc, wrap_width) or [""]
            if len(text) + 2 > col:  # a long key: the doc starts on the next line
                lines.append(text)
                lines.extend(" " * col + p for p in parts if p)
            else:
                lines.append((text.ljust(col) + parts[0]).rstrip())
                lines.extend(" " * col + p for p in parts[1:])
    return "\n".join(lines)

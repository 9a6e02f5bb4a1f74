"""Generate the configuration reference in docs/operations.md from the settings classes.

The service (``service.settings.ServiceSettings``, prefix ``FRAUD_``) and the UI
(``ui.settings.UISettings``, prefix ``FRAUD_UI_``) are configured only through environment
variables; their pydantic fields are the single source of truth. This script renders one
Markdown table per class (variable, type, default, allowed values, description) and writes it
between the ``<!-- config-reference:begin -->`` / ``<!-- config-reference:end -->`` markers.

    uv run --frozen python scripts/gen_config_docs.py          # rewrite docs/operations.md
    uv run --frozen python scripts/gen_config_docs.py --check  # exit 1 if the doc has drifted
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from collections.abc import Iterable
from enum import Enum
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script: make the project packages importable
    sys.path.insert(0, str(REPO_ROOT))

DOC_PATH = REPO_ROOT / "docs" / "operations.md"
BEGIN_MARKER = "<!-- config-reference:begin -->"
END_MARKER = "<!-- config-reference:end -->"

#: (section title, "module:Class") of every settings class documented, in order.
SETTINGS_CLASSES: tuple[tuple[str, str], ...] = (
    ("Scoring API (`FRAUD_*`)", "service.settings:ServiceSettings"),
    ("Analyst UI (`FRAUD_UI_*`)", "ui.settings:UISettings"),
)

_BOUNDS: tuple[tuple[type, str, str], ...] = (
    (annotated_types.Ge, "ge", ">="),
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Le, "le", "<="),
    (annotated_types.Lt, "lt", "<"),
)


def load_class(reference: str) -> type[BaseSettings]:
    """Import ``module:Class`` and check that it is a pydantic-settings class."""
    module_name, _, class_name = reference.partition(":")
    module = __import__(module_name, fromlist=[class_name])
    settings_class = getattr(module, class_name)
    if not (isinstance(settings_class, type) and issubclass(settings_class, BaseSettings)):
        raise TypeError(f"{reference} is not a pydantic BaseSettings class")
    return settings_class


def type_label(annotation: Any) -> str:  # noqa: PLR0911  (one return per kind of type)
    """A short, reader-friendly name of a field's type (``int``, ``list of str``, ``one of``)."""
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return type_label(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        parts = [type_label(arg) for arg in get_args(annotation) if arg is not type(None)]
        label = " or ".join(parts)
        return f"{label} (optional)" if type(None) in get_args(annotation) else label
    if origin is Literal:
        return "one of"
    if origin in (list, tuple, set, frozenset):
        args = [arg for arg in get_args(annotation) if arg is not Ellipsis]
        inner = type_label(args[0]) if args else "str"
        return f"comma-separated list of {inner}"
    if annotation is SecretStr:
        return "secret str"
    if isinstance(annotation, type):
        if issubclass(annotation, Path):
            return "path"
        if issubclass(annotation, Enum):
            return "one of"
        return annotation.__name__
    return str(annotation)


def allowed_values(field: FieldInfo) -> str:
    """Constraints of a field as text: literal choices or numeric bounds."""
    annotation = field.annotation
    for candidate in (annotation, *get_args(annotation)):
        if get_origin(candidate) is Literal:
            return ", ".join(f"`{value}`" for value in get_args(candidate))
        if isinstance(candidate, type) and issubclass(candidate, Enum):
            return ", ".join(f"`{member.value}`" for member in candidate)
    bounds = []
    for constraint in field.metadata:
        for kind, attribute, symbol in _BOUNDS:
            if isinstance(constraint, kind):
                bounds.append(f"{symbol} {getattr(constraint, attribute)}")
    return ", ".join(bounds)


def default_label(field: FieldInfo) -> str:  # noqa: PLR0911  (one return per kind of value)
    """The default value as it would be written in the environment (secrets are not shown)."""
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "*(required)*"
    else:
        value = field.default
    if isinstance(value, SecretStr):
        return "*(secret; set per deployment)*"
    if value is None:
        return "*(unset)*"
    if isinstance(value, list | tuple | set | frozenset):
        return "*(empty)*" if not value else f"`{','.join(str(item) for item in value)}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, str) and value == "":
        return "*(empty)*"
    return f"`{value}`"


def _cell(text: str) -> str:
    """Make text safe inside a Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def render_class(title: str, settings_class: type[BaseSettings]) -> str:
    """The Markdown section (heading + table) for one settings class."""
    prefix = str(settings_class.model_config.get("env_prefix", ""))
    lines = [
        f"### {title}",
        "",
        f"Source: `{settings_class.__module__}.{settings_class.__name__}`.",
        "",
        "| Variable | Type | Default | Allowed | Description |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, field in settings_class.model_fields.items():
        variable = (field.alias or f"{prefix}{name}").upper()
        lines.append(
            "| "
            + " | ".join(
                [
                    f"`{variable}`",
                    _cell(type_label(field.annotation)),
                    _cell(default_label(field)),
                    _cell(allowed_values(field)),
                    _cell(field.description or ""),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def render_reference(classes: Iterable[tuple[str, str]] = SETTINGS_CLASSES) -> str:
    """The whole generated block, markers included."""
    sections = [render_class(title, load_class(reference)) for title, reference in classes]
    note = (
        "<!-- Generated by scripts/gen_config_docs.py from the settings classes: "
        "edit the classes, then run `make config-docs`. -->"
    )
    return "\n".join([BEGIN_MARKER, note, "", "\n\n".join(sections), "", END_MARKER])


def splice(document: str, block: str) -> str:
    """Replace the marked block in ``document`` with ``block``."""
    start = document.find(BEGIN_MARKER)
    end = document.find(END_MARKER)
    if start < 0 or end < start:
        raise ValueError(f"markers {BEGIN_MARKER} / {END_MARKER} not found in the document")
    return document[:start] + block + document[end + len(END_MARKER) :]


def main(argv: list[str] | None = None) -> int:
    """Rewrite (or with ``--check`` verify) the configuration reference in the doc."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--doc", type=Path, default=DOC_PATH, help="Markdown file to update")
    parser.add_argument("--check", action="store_true", help="fail if the doc is out of date")
    args = parser.parse_args(argv)

    current = args.doc.read_text(encoding="utf-8")
    updated = splice(current, render_reference())
    if args.check:
        if updated != current:
            print(
                f"{args.doc} is out of date with the settings classes: run `make config-docs`",
                file=sys.stderr,
            )
            return 1
        print(f"{args.doc}: configuration reference is up to date")
        return 0
    if updated != current:
        args.doc.write_text(updated, encoding="utf-8")
        print(f"updated {args.doc}")
    else:
        print(f"{args.doc} already up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Reading a job file: YAML, ``--set key=value`` overrides, validation and readable errors.

Every problem is reported with its key path as written in the file (``methods.2.steps``) and,
where the set of valid values is finite, the allowed values, before any work is done.
"""

from __future__ import annotations

import hashlib
import json
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .spec import ADDED_LATER_KEYS, EXECUTION_ONLY_KEYS, LOCATION_KEYS, SECTIONS, JobSpec


class SpecError(ValueError):
    """A job spec that cannot run; the message names the file, the key path and what is allowed."""


def load_job(path: str | Path, overrides: typing.Sequence[str] = ()) -> JobSpec:
    """Read, override and validate a job file."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: job file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise SpecError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: a job file must be a mapping of sections (model, dataset, methods, ...)")
    return validate_job(apply_overrides(raw, overrides), source=str(path))


def validate_job(raw: dict[str, Any], source: str = "<job>") -> JobSpec:
    """Types and ranges (pydantic), then the values that only fail together (``checks``)."""
    try:
        spec = JobSpec.model_validate(raw)
    except ValidationError as error:
        raise SpecError(format_validation_error(error, source)) from None
    check_consistency(spec, source)
    return spec


def check_consistency(spec: JobSpec, source: str = "<job>") -> None:
    """Refuse values that are impossible together (a tile as large as the crop, …), naming each key."""
    from .checks import consistency_problems, format_problems

    problems = consistency_problems(spec)
    if problems:
        raise SpecError(format_problems(problems, source))


def apply_overrides(raw: dict[str, Any], overrides: typing.Sequence[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides; values are parsed as YAML (numbers, booleans, lists)."""
    raw = json.loads(json.dumps(raw))  # deep copy of plain data
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise SpecError(f"--set {item!r}: expected key.path=value")
        value = yaml.safe_load(text) if text.strip() else ""
        _assign(raw, key.split("."), value, item)
    return raw


def _assign(node: Any, parts: list[str], value: Any, item: str) -> None:
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise SpecError(f"--set {item!r}: {where} is not an index of a list of {len(node)} items")
            if last:
                node[int(part)] = value
                return
            node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
                return
            node = node.setdefault(part, {})
        else:
            raise SpecError(f"--set {item!r}: {'.'.join(parts[:depth])} is a value, not a section")


def format_validation_error(error: ValidationError, source: str, root: type[BaseModel] = JobSpec) -> str:
    """One line per problem: the key path as written (relative to ``root``, the validated model) and why."""
    lines = [f"{source}: invalid job spec ({error.error_count()} problem{'s' if error.error_count() > 1 else ''})"]
    for item in error.errors():
        loc = item["loc"]
        path = _display_path(loc, root) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            allowed = _allowed_keys(loc[:-1], root)
            message = "unknown key" + (f"; allowed keys: {', '.join(allowed)}" if allowed else "")
        elif item["type"] == "missing":
            message = "required key is missing"
        elif item["type"] == "union_tag_invalid":
            message = (
                message.replace("Input tag", "unknown method")
                .replace("found using 'name' ", "")
                .replace(" does not match any of the expected tags:", "; allowed:")
            )
        elif item["type"] == "value_error":
            message = message.removeprefix("Value error, ")
        if item["type"] not in ("missing", "extra_forbidden") and "input" in item:
            message += f" (got {item['input']!r})" if not isinstance(item["input"], (dict, list)) else ""
        lines.append(f"  {path}: {message}")
    return "\n".join(lines)


def _walk(loc: tuple[Any, ...], root: type[BaseModel] = JobSpec) -> tuple[list[str], Any]:
    """Follow a pydantic error location through the spec's models.

    Returns the key path as the user wrote it (the discriminator tags pydantic inserts for
    method unions dropped) and the annotation found at its end.
    """
    parts: list[str] = []
    model: Any = root
    for part in loc:
        candidates = _models_in(model)
        tagged = [m for m in candidates if _tag_of(m) == part] if isinstance(part, str) and len(candidates) > 1 else []
        if tagged:
            model = tagged[0]
            continue
        parts.append(str(part))
        model = _step(model, part)
    return parts, model


def _display_path(loc: tuple[Any, ...], root: type[BaseModel] = JobSpec) -> str:
    return ".".join(_walk(loc, root)[0])


def _allowed_keys(loc: tuple[Any, ...], root: type[BaseModel] = JobSpec) -> list[str]:
    models = _models_in(_walk(loc, root)[1])
    return sorted(_fields(models[0])) if len(models) == 1 else []


def _fields(model: type[BaseModel]) -> dict[str, Any]:
    """Keys of a spec model and their annotations; a job's also the registered experiment sections."""
    fields = {name: field.annotation for name, field in model.model_fields.items()}
    if model is JobSpec:
        fields.update(SECTIONS)
    return fields


def _step(annotation: Any, part: Any) -> Any:
    models = _models_in(annotation)
    if isinstance(part, int):
        args = typing.get_args(_strip(annotation))
        return args[0] if args else None
    if len(models) == 1:
        return _fields(models[0]).get(part)
    return None


def _strip(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    for meta in _metadata(annotation):  # a registry's entries (the methods list): its spec classes
        if hasattr(meta, "models"):
            return list(meta.models())
    annotation = _strip(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        found: list[type[BaseModel]] = []
        for arg in typing.get_args(annotation):
            found.extend(_models_in(arg))
        return found
    return []


def _metadata(annotation: Any) -> list[Any]:
    found = []
    while typing.get_origin(annotation) is typing.Annotated:
        annotation, *meta = typing.get_args(annotation)
        found.extend(meta)
    return found


def _tag_of(model: type[BaseModel]) -> str | None:
    tag = getattr(model, "tag", None)
    if callable(tag):
        return tag()
    field = model.model_fields.get("name")
    if field is None:
        return None
    args = typing.get_args(field.annotation)
    return args[0] if len(args) == 1 else None


def science_dict(spec: JobSpec | dict[str, Any]) -> dict[str, Any]:
    """The part of the spec that determines the numbers: everything but execution settings and
    the dataset's location (its images are identified by their list, see ``data.identity``).
    Also takes an already dumped spec or science dict (e.g. a manifest's)."""
    data = spec.model_dump(mode="json") if isinstance(spec, JobSpec) else json.loads(json.dumps(spec))
    for key_path in EXECUTION_ONLY_KEYS | LOCATION_KEYS:
        node = data
        for part in key_path[:-1]:
            node = node.get(part, {})
        node.pop(key_path[-1], None)
    for key_path, default in ADDED_LATER_KEYS.items():
        node = data
        for part in key_path[:-1]:
            node = node.get(part, {})
        if node.get(key_path[-1], default) == default:
            node.pop(key_path[-1], None)
    return data


def spec_hash(spec: JobSpec) -> str:
    canonical = json.dumps(science_dict(spec), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def spec_differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Human-readable list of what changed between two science dicts (for refusing a resume)."""
    changes: list[str] = []
    for key in sorted(set(old) | set(new)):
        path = f"{prefix}{key}"
        if key not in old:
            changes.append(f"{path}: added ({new[key]!r})")
        elif key not in new:
            changes.append(f"{path}: removed (was {old[key]!r})")
        elif isinstance(old[key], dict) and isinstance(new[key], dict):
            changes.extend(spec_differences(old[key], new[key], f"{path}."))
        elif old[key] != new[key]:
            changes.append(f"{path}: {old[key]!r} -> {new[key]!r}")
    return changes

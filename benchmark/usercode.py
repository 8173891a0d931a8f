"""Code a job names: ``path/to/file.py:function`` or ``package.module:function``.

A model factory or an attribution callable of the user's is named in the job as a *code
reference*. Parsing one is syntax only, so a spec validates where the code is not (reading the
results of a run on another machine). ``load`` imports it: a file relative to the working
directory (one self-contained file: it is also what travels to the workers), a module like
``python -m`` would find it (the working directory on the path).

On Ray the code must reach the actors, wherever they run: ``Shipment`` lists the files and the
local packages (not those installed in site-packages) for the actors' ``runtime_env``
(``py_modules``), and ``install`` lets a worker find its shipped copy of each file (by name and
content hash) so that it loads exactly the code the driver validated.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable

_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_DOTTED = rf"{_IDENTIFIER}(?:\.{_IDENTIFIER})*"
_REFERENCE = re.compile(rf"^(?P<target>.+?):(?P<attribute>{_DOTTED})$")

# Where a worker found each shipped file: reference text -> local path (``install``).
_SHIPPED: dict[str, Path] = {}
_LOADED: dict[tuple[str, str], ModuleType] = {}


class UserCodeError(ValueError):
    """A code reference that cannot be loaded; the message says what is missing and where it looked."""


@dataclass(frozen=True)
class CodeRef:
    """``target:attribute``; ``target`` is a ``.py`` file path or a dotted module name."""

    text: str
    target: str
    attribute: str

    @property
    def is_file(self) -> bool:
        return self.target.endswith(".py")

    @property
    def stem(self) -> str:
        """A short readable name: the file's stem or the module's last part."""
        return Path(self.target).stem if self.is_file else self.target.rsplit(".", 1)[-1]


def parse_ref(text: str) -> CodeRef | None:
    """The code reference ``text`` spells, or None when it is not one (syntax only, nothing imported)."""
    match = _REFERENCE.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        return None
    target, attribute = match["target"], match["attribute"]
    if target.endswith(".py") or re.fullmatch(_DOTTED, target):
        return CodeRef(text, target, attribute)
    return None


def resolve_file(ref: CodeRef) -> Path:
    """The file a file reference names: this worker's shipped copy, else relative to the working directory."""
    shipped = _SHIPPED.get(ref.text)
    if shipped is not None:
        return shipped
    path = Path(ref.target).expanduser()
    return path if path.is_absolute() else Path.cwd() / path


def load(text: str) -> Any:
    """The object a code reference names (imported now; a file is imported once per content)."""
    ref = parse_ref(text)
    if ref is None:
        raise UserCodeError(f"'{text}' is not a code reference: expected 'path/to/file.py:function' or 'package.module:function'")
    module = _load_file(ref) if ref.is_file else _import_module(ref)
    value: Any = module
    for part in ref.attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            where = resolve_file(ref) if ref.is_file else module.__name__
            public = sorted(n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n)))
            raise UserCodeError(
                f"{where} has no '{ref.attribute}'" + (f"; callables there: {', '.join(public[:12])}" if public else "")
            ) from None
    return value


def _load_file(ref: CodeRef) -> ModuleType:
    path = resolve_file(ref)
    if not path.is_file():
        raise UserCodeError(f"file {path} does not exist (a relative path is read from the working directory {Path.cwd()})")
    digest = file_digest(path)
    key = (str(path.resolve()), digest)
    if key in _LOADED:
        return _LOADED[key]
    name = f"benchmark_usercode.{re.sub(r'[^A-Za-z0-9_]', '_', path.stem)}_{digest[:10]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UserCodeError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look classes up by module name
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[name]
        raise UserCodeError(f"importing {path} failed: {type(error).__name__}: {error}") from error
    _LOADED[key] = module
    return module


def _import_module(ref: CodeRef) -> ModuleType:
    try:
        return importlib.import_module(ref.target)
    except ModuleNotFoundError as error:
        top = ref.target.split(".")[0]
        if error.name not in (top, ref.target) and not ref.target.startswith(f"{error.name}."):
            raise UserCodeError(f"importing {ref.target} failed: {error}") from error
        cwd = os.getcwd()
        if cwd not in sys.path:  # like `python -m`: the working directory's packages
            sys.path.insert(0, cwd)
            return _import_module(ref)
        raise UserCodeError(
            f"no module named '{error.name}' (looked on sys.path and in the working directory {cwd}); "
            "install the package or run from the folder that holds it"
        ) from None
    except Exception as error:
        raise UserCodeError(f"importing {ref.target} failed: {type(error).__name__}: {error}") from error


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- shipping to Ray workers ----------------------------------------------------------------------
@dataclass(frozen=True)
class ShippedFile:
    name: str  # file name, as it lands in the worker's py_modules folder
    sha256: str


@dataclass
class Shipment:
    """What of the user's code travels with the actors (``runtime_env={'py_modules': ...}``)."""

    py_modules: list[str] = field(default_factory=list)  # local files and package folders, uploaded by Ray
    files: dict[str, ShippedFile] = field(default_factory=dict)  # file reference -> what its copy looks like
    modules: dict[str, str] = field(default_factory=dict)  # shipped top-level package -> its local folder

    def runtime_env(self) -> dict[str, Any] | None:
        return {"py_modules": list(self.py_modules)} if self.py_modules else None


def references(spec: Any) -> list[str]:
    """The code references of a job spec: a factory model's name and every callable method's name."""
    from .config.spec import CallableSpec
    from .models.registry import is_factory_name

    found = [spec.model.name] if is_factory_name(spec.model.name) else []
    return found + [method.name for method in spec.methods if isinstance(method, CallableSpec)]


def shipment_for(references: Iterable[str]) -> Shipment:
    """The files and local packages the references need on a worker that has none of them."""
    shipment = Shipment()
    for text in references:
        ref = parse_ref(text)
        if ref is None:
            continue
        if ref.is_file:
            path = resolve_file(ref).resolve()
            if not path.is_file():
                raise UserCodeError(f"file {path} does not exist")
            shipment.files[ref.text] = ShippedFile(path.name, file_digest(path))
            if str(path) not in shipment.py_modules:
                shipment.py_modules.append(str(path))
            continue
        module = _import_module(ref)
        top = module.__name__.split(".")[0]
        location = _local_location(sys.modules[top])
        if location is not None and top not in shipment.modules:
            shipment.modules[top] = location
            shipment.py_modules.append(location)
    return shipment


def _local_location(module: ModuleType) -> str | None:
    """The folder (package) or file (single module) to ship, or None for installed and standard modules."""
    if module.__name__ == "benchmark":
        return None
    paths = list(getattr(module, "__path__", [])) or [getattr(module, "__file__", None)]
    if not paths or paths[0] is None or len(paths) != 1:
        return None
    location = Path(paths[0]).resolve()
    installed = {sysconfig.get_paths()[key] for key in ("purelib", "platlib", "stdlib", "platstdlib")}
    if any(location.is_relative_to(Path(root).resolve()) for root in installed if root):
        return None
    if "site-packages" in location.parts or "dist-packages" in location.parts:
        return None
    return str(location)


def install(shipment: Shipment | None) -> dict[str, str]:
    """On a worker: find the shipped copy of every file reference (Ray put it on ``sys.path``), so
    ``load`` uses it; returns reference -> where its code is loaded from (files and packages)."""
    found: dict[str, str] = {}
    if shipment is None:
        return found
    for text, shipped in shipment.files.items():
        copy = _find_on_path(shipped)
        if copy is None:
            raise UserCodeError(
                f"'{text}': the shipped copy of {shipped.name} (sha256 {shipped.sha256[:12]}) is not on this worker's "
                "sys.path; was the actor started with the run's runtime_env?"
            )
        _SHIPPED[text] = copy
        found[text] = str(copy)
    for top in shipment.modules:
        spec = importlib.util.find_spec(top)
        found[top] = str(spec.origin if spec and spec.origin else (list(spec.submodule_search_locations or []) if spec else "?"))
    return found


def _find_on_path(shipped: ShippedFile) -> Path | None:
    for entry in sys.path:
        candidate = Path(entry or ".") / shipped.name
        if candidate.is_file() and file_digest(candidate) == shipped.sha256:
            return candidate
    return None


__all__ = [
    "CodeRef", "Shipment", "UserCodeError", "file_digest", "install", "load", "parse_ref", "references", "shipment_for",
]

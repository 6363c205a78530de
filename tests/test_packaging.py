"""A non-editable install ships every module and template: pyproject.toml lists each package and
each template file type (a missing one works in the editable dev install and breaks on a server)."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_of_the_code_is_listed():
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "newsletter").rglob("__init__.py")}
    found |= {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "workers").rglob("__init__.py")}
    assert found - set(SETUPTOOLS["packages"]) == set()


def test_every_template_file_is_shipped():
    patterns = SETUPTOOLS["package-data"]["newsletter._templates"]
    templates = [p.relative_to(ROOT / "templates") for p in (ROOT / "templates").rglob("*") if p.is_file()]
    missed = [
        str(t) for t in templates if t.suffix != ".py" and not any(fnmatch(str(t), pat) for pat in patterns)
    ]
    assert missed == []


def test_every_template_and_migration_folder_is_listed():
    """A folder of files that setuptools could import but was not told to ship made every
    install (`make demo` included) print a page of BuildBackendWarning, one per folder."""
    folders = {
        ".".join(("newsletter", f"_{top}", *d.relative_to(ROOT / top).parts))
        for top in ("templates", "migrations")
        for d in [ROOT / top, *(ROOT / top).rglob("*")]
        if d.is_dir() and d.name != "__pycache__"
    }
    assert folders - set(SETUPTOOLS["packages"]) == set()

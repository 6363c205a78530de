"""The house rules the machine can check (run by `make lint`):

1. no import cycle between modules of `newsletter/` and `workers/` (function-local imports count);
2. nothing in `newsletter/` imports `workers/` (the core never reaches up to its entry points);
3. nothing but the entry points imports the web app factory `newsletter.web.app`;
4. no module under `newsletter/` is longer than MAX_LINES.

`python scripts/check_architecture.py [--graph]` prints what breaks a rule and exits 1, or prints a
one-line summary; `--graph` also prints each module's imports of the project's own modules.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("newsletter", "workers")
MAX_LINES = 400
# Entry points may import the app factory: the console command, the demo, and the package itself.
APP_IMPORTERS = {"newsletter.cli", "newsletter.demo", "newsletter.web", "newsletter.web.app"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def find_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project's modules that `name` imports (resolving `from pkg import submodule`)."""
    found: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    # `from newsletter.papers import x` names the package; its own submodules are not edges back.
    return {t for t in found if not name.startswith(t + ".")}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def main(argv: list[str]) -> int:
    modules = find_modules()
    graph = {name: imported(name, path, modules) for name, path in modules.items()}
    problems = [f"import cycle: {' <-> '.join(c)}" for c in cycles(graph)]
    problems += [
        f"{name} imports {target} (the core must not import the worker entry points)"
        for name, targets in sorted(graph.items())
        if name.startswith("newsletter")
        for target in sorted(targets)
        if target.startswith("workers")
    ]
    problems += [
        f"{name} imports newsletter.web.app (only entry points may)"
        for name, targets in sorted(graph.items())
        if "newsletter.web.app" in targets and name not in APP_IMPORTERS
    ]
    sizes = {name: len(path.read_text().splitlines()) for name, path in modules.items()}
    problems += [
        f"{name} has {n} lines (at most {MAX_LINES})"
        for name, n in sorted(sizes.items())
        if name.startswith("newsletter") and n > MAX_LINES
    ]
    if "--graph" in argv:
        for name in sorted(graph):
            print(f"{name} -> {', '.join(sorted(graph[name])) or '(nothing of ours)'}")
    for problem in problems:
        print(problem)
    if problems:
        return 1
    largest = max((n, name) for name, n in sizes.items() if name.startswith("newsletter"))
    print(
        f"architecture: {len(modules)} modules, no import cycle, newsletter/ never imports workers/, "
        f"largest module {largest[1]} ({largest[0]} lines)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Dependencies between the platform's parts point one way (DESIGN.md, "How the parts depend on each other").

Every non-test, non-migration module of the apps and of `agent_platform` is parsed (nothing is imported), and each
import it makes of another part, at module level or inside a function, is checked against the allowed edges below.
Anything not listed is forbidden: `traces` and `costs` are sinks fed through the observer hub, so they import no
producer (`agents`, `prompts`, `experiments`) and `traces` does not import `costs`.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ("agents", "prompts", "experiments", "traces", "costs")
PARTS = (*APPS, "agent_platform")

# (importing part, imported part) -> the modules of the imported part it may use (None: any of them)
ALLOWED_EDGES: dict[tuple[str, str], tuple[str, ...] | None] = {
    ("agents", "prompts"): None,
    ("experiments", "prompts"): None,
    ("experiments", "traces"): ("traces.selectors",),
    ("costs", "traces"): ("traces.selectors",),
    **{(app, "agent_platform"): None for app in APPS},
}
# agent_platform imports no app, except where the project is wired together: its URL and websocket routing may
# import the apps' own routing modules.
COMPOSITION_ROOTS = {"agent_platform.routing", "agent_platform.urls"}
ROUTING_MODULES = ("routing", "urls", "web_urls")


def _is_source(path: Path) -> bool:
    relative = path.relative_to(ROOT).parts
    return not (
        "tests" in relative or "migrations" in relative or path.name.startswith("test_") or path.name == "conftest.py"
    )


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(dotted: str) -> bool:
    base = ROOT.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imported_modules(source: str, *, module: str, is_package: bool = False) -> list[tuple[str, int]]:
    """(dotted module, line) of every import in `source`, wherever it stands (module level, function, class,
    `if TYPE_CHECKING`); `from x import y` names `x.y` when that is a module of this repository, else `x`."""
    found: list[tuple[str, int]] = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                base = node.module or ""
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.append((candidate if alias.name != "*" and _is_module(candidate) else base, node.lineno))
    return found


def forbidden_reason(*, module: str, target: str) -> str | None:
    """Why `module` may not import `target`, or None when it may."""
    source_part, target_part = module.split(".")[0], target.split(".")[0]
    if target_part == source_part or target_part not in PARTS:
        return None
    if source_part == "agent_platform":
        if module in COMPOSITION_ROOTS and target.split(".")[-1] in ROUTING_MODULES:
            return None
        return "agent_platform imports no app (only its URL/websocket routing may import an app's routing)"
    if (source_part, target_part) not in ALLOWED_EDGES:
        return f"{source_part} may not depend on {target_part}"
    allowed = ALLOWED_EDGES[(source_part, target_part)]
    if allowed is None or any(target == m or target.startswith(f"{m}.") for m in allowed):
        return None
    return f"{source_part} may use only {', '.join(allowed)} of {target_part}"


def source_files() -> list[Path]:
    return sorted(p for part in PARTS for p in (ROOT / part).rglob("*.py") if _is_source(p))


def test_every_part_is_scanned():
    scanned = {_module_name(p).split(".")[0] for p in source_files()}
    assert scanned == set(PARTS)
    assert "traces.services" in {_module_name(p) for p in source_files()}


def test_imports_between_parts_follow_the_allowed_edges():
    violations = []
    for path in source_files():
        module = _module_name(path)
        source = path.read_text(encoding="utf-8")
        for target, line in imported_modules(source, module=module, is_package=path.name == "__init__.py"):
            reason = forbidden_reason(module=module, target=target)
            message = f"{module} (line {line}) imports {target}: {reason}"
            if reason and message not in violations:  # `from x.y import a, b` is one import of x.y
                violations.append(message)
    assert not violations, "forbidden imports between apps:\n" + "\n".join(violations)


def test_the_checker_sees_every_form_of_import():
    source = (
        "import traces.models\n"
        "from costs import selectors\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from agents.models import Agent\n"
        "def lazy():\n"
        "    from costs.services import cost_records_write\n"
        "    from . import selectors\n"
        "    from .models import Span\n"
    )
    found = [target for target, _ in imported_modules(source, module="traces.observer")]
    assert found == [
        "traces.models",
        "costs.selectors",
        "typing",
        "agents.models",
        "costs.services",
        "traces.selectors",
        "traces.models",
    ]
    reasons = {t: forbidden_reason(module="traces.observer", target=t) for t in found}
    assert reasons["costs.services"] and reasons["agents.models"] and reasons["costs.selectors"]
    assert reasons["traces.models"] is None and reasons["typing"] is None
    assert forbidden_reason(module="costs.views", target="traces.selectors") is None
    assert forbidden_reason(module="costs.views", target="traces.models")
    assert forbidden_reason(module="agent_platform.routing", target="agents.routing") is None
    assert forbidden_reason(module="agent_platform.llm.engine", target="costs.services")

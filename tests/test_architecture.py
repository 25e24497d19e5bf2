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

# (importing part, imported part) -> the modules of the imported part it may use. No wildcards: an app reaches
# another app only through its `services` (writes) and `selectors` (reads).
APP_FACADES = ("services", "selectors")
ALLOWED_EDGES: dict[tuple[str, str], tuple[str, ...]] = {
    ("agents", "prompts"): ("prompts.services", "prompts.selectors"),
    ("experiments", "prompts"): ("prompts.services", "prompts.selectors"),
    ("experiments", "traces"): ("traces.selectors",),
    ("costs", "traces"): ("traces.selectors",),
}
# What the apps may use of the platform core: the LLM layer only through its facade (`llm.client`) and types, and
# the shared parts below. The engine, providers and registry stay behind the facade.
PLATFORM_MODULES = (
    "agent_platform.accounts.models",
    "agent_platform.accounts.selectors",
    "agent_platform.accounts.services",
    "agent_platform.accounts.types",
    "agent_platform.api.errors",
    "agent_platform.api.pagination",
    "agent_platform.cache_safe",
    "agent_platform.celery",
    "agent_platform.llm.client",
    "agent_platform.llm.types",
    "agent_platform.observability",
    "agent_platform.security.pii",
    "agent_platform.worker_loop",
)
ALLOWED_EDGES.update({(app, "agent_platform"): PLATFORM_MODULES for app in APPS})
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
    inside_api = module == f"{target_part}.api" or module.startswith(f"{target_part}.api.")
    if target_part in APPS and target.split(".")[1:2] == ["api"] and module != f"{target_part}.urls" and not inside_api:
        return (
            f"only {target_part}.urls imports {target_part}.api (views, services and other apps use services/selectors)"
        )
    if target_part == source_part or target_part not in PARTS:
        return None
    if source_part == "agent_platform":
        if module in COMPOSITION_ROOTS and target.split(".")[-1] in ROUTING_MODULES:
            return None
        return "agent_platform imports no app (only its URL/websocket routing may import an app's routing)"
    if (source_part, target_part) not in ALLOWED_EDGES:
        return f"{source_part} may not depend on {target_part}"
    allowed = ALLOWED_EDGES[(source_part, target_part)]
    if any(target == m or target.startswith(f"{m}.") for m in allowed):
        return None
    return f"{source_part} may use only {', '.join(allowed)} of {target_part}"


def module_level_imports(source: str, *, module: str, is_package: bool = False) -> set[str]:
    """The modules of this repository that `source` imports when it is itself imported: module-level imports only
    (an import inside a function runs later, and `if TYPE_CHECKING:` never runs)."""
    tree = ast.parse(source)
    found: set[str] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.update(
                    target
                    for target, _ in imported_modules(ast.unparse(node), module=module, is_package=is_package)
                    if _is_module(target)
                )
            elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)

    visit(tree.body)
    return found


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each group of modules that import one another in a circle (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph.get(node, ()):
                cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return cycles


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


def test_no_import_cycle_between_modules():
    graph: dict[str, set[str]] = {}
    for path in source_files():
        module = _module_name(path)
        targets = module_level_imports(
            path.read_text(encoding="utf-8"), module=module, is_package=path.name == "__init__.py"
        )
        # a package's own modules importing one another through the package is how Python packages work
        graph[module] = {t for t in targets if t != module and not module.startswith(f"{t}.")}
    cycles = import_cycles(graph)
    assert not cycles, "modules importing one another in a circle:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_rules_refuse_deliberately_wrong_imports():
    """A test of the test: each rule refuses the import it exists to refuse."""
    wrong = {
        ("agents.services", "prompts.models"): "only through services/selectors",
        ("experiments.runner", "agent_platform.llm.engine"): "the LLM layer only through its facade",
        ("experiments.runner", "agent_platform.llm.providers"): "the LLM layer only through its facade",
        ("costs.views", "costs.api"): "only urls imports an app's api",
        ("agents.services", "agents.api"): "a service never uses the API layer",
        ("prompts.services", "agents.selectors"): "prompts does not depend on agents",
        ("traces.observer", "costs.services"): "traces is a sink",
        ("agent_platform.llm.engine", "costs.services"): "the core imports no app",
    }
    for (module, target), why in wrong.items():
        assert forbidden_reason(module=module, target=target), why
    assert forbidden_reason(module="agents.urls", target="agents.api") is None
    assert forbidden_reason(module="prompts.api.views", target="prompts.api.serializers") is None  # one package
    assert forbidden_reason(module="prompts.views", target="prompts.api.serializers") is not None
    assert forbidden_reason(module="agents.runs", target="prompts.selectors.rendering") is None
    assert forbidden_reason(module="experiments.runner", target="agent_platform.llm.client") is None


def test_the_cycle_check_finds_a_circle_and_names_its_modules():
    graph = {"a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x"}, "b.p": {"a.x"}, "b.q": {"b.q"}}
    assert import_cycles(graph) == [["a.x", "a.y", "a.z"], ["b.q"]]
    assert import_cycles({"a.x": {"a.y"}, "a.y": set()}) == []
    source = (
        "import costs.selectors\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    import traces.models\n"
        "def f():\n"
        "    import agents.models\n"
    )
    assert module_level_imports(source, module="costs.views") == {"costs.selectors"}

"""Sandboxed Jinja2 rendering for prompts, one module per concern; this package is what the rest of the app imports.

Templates run in an `ImmutableSandboxedEnvironment` with `StrictUndefined`, hardened further:

- **No Python internals**: the sandbox refuses `_`-prefixed and internal attributes (`__class__`, `__globals__`,
  `__subclasses__`, `_TemplateReference__context`, ...), through `.`/`[]`/`|attr` and through `str.format` fields;
  such an access raises `jinja2.sandbox.SecurityError` → `PROMPT_SANDBOX_VIOLATION`. Nothing from Django (settings,
  request) is ever put into the template context: only the prompt's declared variables.
- **Bounded output and time**: every loop's iterable is wrapped (by rewriting the parsed template) in a guard that
  counts iterations; every call (`environment.call`) counts too; the deadline is read on every tick and before every
  filter, operator and literal. `range()` refuses more than `MAX_RANGE` items.
- **Bounded building**: the sandbox caps what is *built*, not only what is printed. Every value a template makes
  (`*`, `+`, `%`, `~`, list/tuple/dict literals, `str.format`, the growing string methods, and the filters) is
  checked *before* it is built: no single string or container may weigh more than `max_chars`, where a value's
  weight is (a lower bound of) the length of its text through nested containers, so `[[1]*10000]*10000` is refused
  although each list is short; integers that `*`/`**` would make are capped at `MAX_INT_BITS`. One render may build
  at most `BUILT_FACTOR * max_chars` characters and container slots in total. Lazy filter results (`|map`,
  `|batch`, `|slice`, ...) watch the deadline per item. The output stream is cut off at `max_chars`. Any of these →
  `PROMPT_RENDER_LIMIT`.
- **Bounded compiling**: no constant folding (the optimizer is off, filters and the output finalizer take the
  context), so saving a prompt never runs its filters; compiling runs under the render timeout
  (`PROMPT_RENDER_LIMIT`, `stage: compile`); templates nested more than `MAX_NESTING` deep (blocks, brackets, unary
  operators, inline `if`s, counted on the tokens before the recursive parser sees them) or whose parsed tree is
  deeper than `MAX_TREE_DEPTH` are refused with `PROMPT_TEMPLATE_INVALID` (`limit: nesting`, the field named), and
  so are templates whose generated code exceeds `MAX_COMPILED_CODE` (`limit: complexity`): Python's `compile()`
  cannot be interrupted and holds the GIL.
- **Errors with locations**: syntax errors → `PROMPT_TEMPLATE_INVALID` with `line` and `column` (1-based;
  `message_index` for chat prompts); a missing variable → `PROMPT_VARIABLE_MISSING` naming it; a value of the wrong
  type for the schema → `PROMPT_VARIABLE_INVALID`.

Compiled templates are cached per source text (LRU), so rendering the same version again does not recompile.
"""

from prompts.sandbox.compiling import compile_template, inspect_template, referenced_variables
from prompts.sandbox.limits import RenderBudget, RenderLimitExceeded, RenderLimits, TemplateTooComplex, default_limits
from prompts.sandbox.render import render_source
from prompts.sandbox.variables import VARIABLE_TYPES, bind_variables, type_matches
from prompts.sandbox.weight import weight

__all__ = [
    "VARIABLE_TYPES",
    "RenderBudget",
    "RenderLimitExceeded",
    "RenderLimits",
    "TemplateTooComplex",
    "bind_variables",
    "compile_template",
    "default_limits",
    "inspect_template",
    "referenced_variables",
    "render_source",
    "type_matches",
    "weight",
]

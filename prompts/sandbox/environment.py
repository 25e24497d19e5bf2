"""The hardened Jinja2 environment: parser with locations, nesting and code-size limits, guarded loops and literals."""

from __future__ import annotations

import math
import time
from functools import wraps
from typing import Any, NoReturn

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.compiler import CodeGenerator
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.visitor import NodeTransformer

from prompts.sandbox.guards import (
    STRING_METHOD_BOUND_TYPES,
    concat_guard,
    estimate_method,
    finalize_output,
    guard_filter,
    guarded_range,
    literal_guard,
    loop_guard,
    small_lipsum,
    static_text,
)
from prompts.sandbox.limits import (
    MAX_COMPILED_CODE,
    MAX_INT_BITS,
    MAX_NESTING,
    MAX_TREE_DEPTH,
    RenderLimitExceeded,
    TemplateTooComplex,
    charge,
    check_time,
    compile_deadline,
    current_budget,
    sized,
    tick,
    too_big,
)
from prompts.sandbox.weight import NESTED_FORMAT_FIELD, check_format_string, check_int_bits, heavy

CONTEXT_NAMES = frozenset({"loop", "self", "caller", "varargs", "kwargs", "super"})


class _LocatingParser(Parser):
    """Remembers the token the parser failed on, so syntax errors can carry a column; watches the compile deadline."""

    def fail(
        self, msg: str, lineno: int | None = None, exc: type[TemplateSyntaxError] = TemplateSyntaxError
    ) -> NoReturn:
        try:
            super().fail(msg, lineno, exc)
        except TemplateSyntaxError as error:
            current = self.stream.current
            error.failed_token = (current.lineno, current.type, current.value)  # type: ignore[attr-defined]
            raise

    def parse_statement(self) -> Any:
        _check_compile_deadline()
        return super().parse_statement()

    def parse_primary(self, *args: Any, **kwargs: Any) -> nodes.Expr:
        _check_compile_deadline()
        return super().parse_primary(*args, **kwargs)


def _check_compile_deadline() -> None:
    deadline = compile_deadline.get()
    if deadline is not None and time.perf_counter() > deadline:
        raise RenderLimitExceeded("compiling the template took too long", limit="time")


class _DeadlineCodeGenerator(CodeGenerator):
    """Jinja's code generator, watching the compile deadline on every node it writes."""

    def visit(self, node: nodes.Node, *args: Any, **kwargs: Any) -> Any:
        _check_compile_deadline()
        return super().visit(node, *args, **kwargs)


_BLOCK_TAGS = frozenset({"for", "if", "macro", "call", "filter", "with", "autoescape", "block", "raw", "trans"})
_OPENERS, _CLOSERS = frozenset("([{"), frozenset(")]}")
_UNARY = frozenset({"-", "+"})


def _check_nesting(environment: Any, source: str) -> None:
    """Refuse templates that nest blocks, brackets, unary operators or inline `if`s more than MAX_NESTING deep,
    counted on the tokens (the parser recurses on each of these, so the parsed tree cannot be asked)."""
    depth = blocks = expression_ifs = unary_run = 0
    after_block_begin = pending_set = False
    for count, (lineno, kind, value) in enumerate(environment.lexer.tokeniter(source, None)):
        if not count & 0xFF:
            _check_compile_deadline()
        if kind == "whitespace":
            continue
        if kind == "block_begin":
            after_block_begin, expression_ifs = True, 0
            continue
        if kind in ("block_end", "variable_end"):
            if pending_set:
                blocks += 1
            pending_set, expression_ifs, unary_run = False, 0, 0
            continue
        if after_block_begin and kind == "name":
            after_block_begin = False
            if value in _BLOCK_TAGS:
                blocks += 1
            elif value == "set":
                pending_set = True
            elif value.startswith("end"):
                blocks = max(blocks - 1, 0)
            continue
        after_block_begin = False
        if kind == "operator":
            if value in _OPENERS:
                depth += 1
            elif value in _CLOSERS:
                depth = max(depth - 1, 0)
            elif value == "=" and pending_set:
                pending_set = False
            unary_run = unary_run + 1 if value in _UNARY else 0
        elif kind == "name" and value == "not":
            unary_run += 1
        elif kind == "name" and value == "if":
            expression_ifs += 1
            unary_run = 0
        else:
            unary_run = 0
        if depth + blocks + expression_ifs + unary_run > MAX_NESTING:
            raise TemplateTooComplex(
                f"the template nests blocks, brackets and operators more than {MAX_NESTING} deep",
                lineno,
                limit="nesting",
            )


def _check_tree_depth(tree: nodes.Node) -> None:
    stack: list[tuple[nodes.Node, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_TREE_DEPTH:
            raise TemplateTooComplex(
                f"the template's expressions nest more than {MAX_TREE_DEPTH} deep",
                getattr(node, "lineno", 1) or 1,
                limit="nesting",
            )
        stack.extend((child, depth + 1) for child in node.iter_child_nodes())


# Blocks whose text may repeat or is collected into one string before it reaches the output stream.
_BUFFERED = (nodes.For, nodes.Macro, nodes.CallBlock, nodes.FilterBlock, nodes.AssignBlock)
_COUNTED_TEXT_FROM = 64  # shorter text: at most 200,000 iterations x 63 characters


class _LiteralGuards(NodeTransformer):
    """Wraps list, tuple and dict literals (not assignment targets) in `literal_guard`."""

    def _guard(self, node: nodes.Expr) -> nodes.Expr:
        self.generic_visit(node)
        guarded = nodes.Filter(node, "literal_guard", [], [], None, None)
        guarded.set_lineno(node.lineno)
        return guarded

    def visit_List(self, node: nodes.List) -> nodes.Expr:
        return self._guard(node)

    def visit_Dict(self, node: nodes.Dict) -> nodes.Expr:
        return self._guard(node)

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Expr:
        if node.ctx != "load":
            self.generic_visit(node)
            return node
        return self._guard(node)


class PromptEnvironment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = _DeadlineCodeGenerator

    def __init__(self) -> None:
        super().__init__(
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            auto_reload=False,
            cache_size=0,
            # No constant folding: the optimizer would run filters on literals at compile time, with no deadline.
            optimized=False,
            # Takes the context, so the code generator never evaluates outputs at compile time either.
            finalize=finalize_output,
        )
        self.globals["range"] = guarded_range
        self.globals["lipsum"] = small_lipsum
        self.filters = {name: guard_filter(name, f) for name, f in self.filters.items()}
        self.filters["loop_guard"] = loop_guard
        self.filters["concat_guard"] = concat_guard
        self.filters["literal_guard"] = literal_guard
        self.filters["static_text"] = static_text

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        try:
            _check_nesting(self, source)
        except TemplateTooComplex:
            raise
        except TemplateSyntaxError:
            pass  # a lexing error: the parser reports it with its location
        tree = _LocatingParser(self, source, name, filename).parse()
        _check_tree_depth(tree)
        tree = _LiteralGuards().visit(tree)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, "loop_guard", [], [], None, None, lineno=loop.lineno)
        for output in [output for body in tree.find_all(_BUFFERED) for output in body.find_all(nodes.Output)]:
            output.nodes = [
                nodes.Filter(nodes.Const(child.data), "static_text", [], [], None, None, lineno=child.lineno)
                if isinstance(child, nodes.TemplateData) and len(child.data) >= _COUNTED_TEXT_FROM
                else child
                for child in output.nodes
            ]
        for concat in tree.find_all(nodes.Concat):
            guarded = nodes.Filter(nodes.List(concat.nodes, lineno=concat.lineno), "concat_guard", [], [], None, None)
            guarded.set_lineno(concat.lineno)
            concat.nodes = [guarded]
        return tree

    def _generate(
        self, source: nodes.Template, name: str | None, filename: str | None, defer_init: bool = False
    ) -> str:
        code = super()._generate(source, name, filename, defer_init=defer_init)
        text = sum(len(node.data) for node in source.find_all(nodes.TemplateData))
        text += sum(len(node.value) for node in source.find_all(nodes.Const) if isinstance(node.value, str))
        if len(code) - text > MAX_COMPILED_CODE:
            raise TemplateTooComplex(
                "the template has too many expressions and blocks to compile at once; split it into several prompts",
                1,
                limit="complexity",
            )
        _check_compile_deadline()
        return code

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        check_time()
        result_size: int | None = None
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                size = sized(seq)
                if size is not None and isinstance(n, int):
                    times = max(n, 0)
                    too_big(size * times, "repetition (*)")
                    too_big(heavy(seq, "repetition (*)") * times, "repetition (*)")
                    result_size = size * times
            if isinstance(left, int) and isinstance(right, int):
                check_int_bits(left.bit_length() + right.bit_length(), "multiplication (*)")
        elif operator == "**":
            big = isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1
            if big:
                check_int_bits(left.bit_length() * right if right < 1 << 20 else MAX_INT_BITS + 1, "power (**)")
            if isinstance(left, float) or isinstance(right, float):
                try:
                    return math.pow(left, right)
                except (OverflowError, ValueError) as exc:
                    raise RenderLimitExceeded(f"power (**) failed: {exc}", limit="size") from None
        elif operator == "+":
            a, b = sized(left), sized(right)
            if a is not None and b is not None:
                too_big(a + b, "addition (+)")
                too_big(heavy(left, "addition (+)") + heavy(right, "addition (+)"), "addition (+)")
                result_size = a + b
        elif operator == "%" and isinstance(left, str):
            if isinstance(right, tuple):
                args: tuple = right
            elif isinstance(right, dict):
                args = tuple(right.values())
            else:
                args = (right,)
            check_format_string(left, args, star="*" in left, what="formatting (%)")
        budget = current_budget.get()
        if budget is not None and result_size:
            budget.charge(result_size, f"operator {operator}")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        tick()
        if isinstance(__obj, STRING_METHOD_BOUND_TYPES):
            estimate = estimate_method(__obj, args, kwargs)
            if estimate is not None:
                too_big(estimate, f"{getattr(__obj, '__name__', 'method')}()")
        result = ImmutableSandboxedEnvironment.call(__self, __context, __obj, *args, **kwargs)
        size = sized(result)
        if size is not None:
            too_big(size, "a call")
            if isinstance(result, dict):  # dict(a=x, b=x, ...), dict.fromkeys(keys, x): one value many times
                heavy(result, "a call")
            charge(result, "a call")
        return result

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(attribute, str) and attribute.startswith("_"):
            return self._private(obj, attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(argument, str) and argument.startswith("_"):
            return self._private(obj, argument)
        return super().getitem(obj, argument)

    def _private(self, obj: Any, name: str) -> Any:
        """`_x` is only ever a key of a mapping (JSON input like `{"_id": 1}`), never an attribute, whether the
        attribute exists or not."""
        if isinstance(obj, dict):
            try:
                return obj[name]
            except LookupError:
                pass
        return self.unsafe_undefined(obj, name)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        """Refuse at once (the stock sandbox returns an undefined that only fails when used, which `|map` or
        `|list` can carry around silently)."""
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe.")

    def wrap_str_format(self, value: Any) -> Any:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt = value.__self__
        nested = bool(NESTED_FORMAT_FIELD.search(fmt))

        @wraps(wrapped)
        def checked(*args: Any, **kwargs: Any) -> str:
            tick()
            values = list(args) + list(kwargs.values())
            if value.__name__ == "format_map" and args and isinstance(args[0], dict):
                values = list(args[0].values())
            check_format_string(fmt, values, star=nested, what="str.format")
            result = wrapped(*args, **kwargs)
            too_big(len(result), "str.format")
            charge(result, "str.format")
            return result

        return checked


ENV = PromptEnvironment()
RESERVED_GLOBALS = frozenset(ENV.globals) | CONTEXT_NAMES

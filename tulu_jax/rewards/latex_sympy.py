"""A small, safe reader of canonical LaTeX answers into sympy expressions.

An integer written before a numeric fraction is a mixed number (``3\\frac{1}{2}`` = 7/2), not a product.
It never evaluates model text: a recursive-descent parser accepts only numbers, single-letter variables,
``\\pi``, ``+ - * / ^``, ``\\frac``, ``\\sqrt``, ``\\cdot``/``\\times`` and brackets, and builds sympy
objects from those pieces. Anything else, an expression longer than ``MAX_LENGTH``, nesting deeper than
``MAX_DEPTH`` or a numeric exponent above ``MAX_EXPONENT`` is refused (``LatexParseError``), so a crafted
answer cannot make sympy build an astronomically large number. Callers still run it under a time limit.
"""

from __future__ import annotations

import re

import sympy

from tulu_jax.rewards.math_normalize import read_mixed_numbers

MAX_LENGTH = 300
MAX_DEPTH = 40
MAX_EXPONENT = 64
MAX_RESULT_BITS = 4096  # a power of a number may not exceed this many bits

_TOKEN = re.compile(
    r"\s*(?:(?P<number>\d+(?:\.\d*)?|\.\d+)|(?P<command>\\[A-Za-z]+)|(?P<name>[A-Za-z])|(?P<op>[-+*/^(){}\[\]]))"
)
_CONSTANTS = {"\\pi": sympy.pi, "\\infty": sympy.oo}
_TIMES = {"\\cdot", "\\times"}
_IGNORED = {"\\left", "\\right", "\\,", "\\displaystyle"}


class LatexParseError(ValueError):
    """The text is not an arithmetic expression this parser accepts."""


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise LatexParseError(f"unexpected character {text[position]!r}")
        position = match.end()
        kind = match.lastgroup
        value = match.group(kind)
        if kind == "command" and value in _IGNORED:
            continue
        if kind == "command" and value == "\\div":
            kind, value = "op", "/"
        elif kind == "command" and value in _TIMES:
            kind, value = "op", "*"
        tokens.append((kind, value))
    return tokens


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]):
        self.tokens = tokens
        self.index = 0
        self.depth = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (expected is not None and token[1] != expected):
            raise LatexParseError(f"expected {expected or 'more input'}, found {token}")
        self.index += 1
        return token

    def nested(self, parse):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise LatexParseError("expression nested too deeply")
        try:
            return parse()
        finally:
            self.depth -= 1

    def expression(self):
        value = self.term()
        while self.peek() and self.peek()[1] in ("+", "-"):
            operator = self.take()[1]
            right = self.term()
            value = value + right if operator == "+" else value - right
        return value

    def term(self):
        value = self.unary()
        while True:
            token = self.peek()
            if token and token[1] in ("*", "/"):
                self.take()
                right = self.unary()
                if token[1] == "/":
                    if right == 0:
                        raise LatexParseError("division by zero")
                    value = value / right
                else:
                    value = value * right
            elif token and self._starts_atom(token):
                value = value * self.power()  # implicit multiplication: 2x, 3\pi, (a)(b)
            else:
                return value

    def unary(self):
        token = self.peek()
        if token and token[1] in ("-", "+"):
            self.take()
            operand = self.nested(self.unary)
            return -operand if token[1] == "-" else operand
        return self.power()

    def power(self):
        base = self.atom()
        if self.peek() and self.peek()[1] == "^":
            self.take()
            exponent = self.nested(self.unary_atom)
            if exponent.is_number and (not exponent.is_finite or abs(exponent) > MAX_EXPONENT):
                raise LatexParseError("exponent too large to check")
            if base.is_Rational and exponent.is_number:
                bits = max(int(base.p).bit_length(), int(base.q).bit_length())
                if bits * abs(float(exponent)) > MAX_RESULT_BITS:
                    raise LatexParseError("power too large to check")
            return sympy.Pow(base, exponent)
        return base

    def unary_atom(self):
        token = self.peek()
        if token and token[1] == "-":
            self.take()
            return -self.atom()
        return self.atom()

    @staticmethod
    def _starts_atom(token) -> bool:
        kind, value = token
        return kind in ("number", "name") or value in ("(", "{", "[") or (
            kind == "command" and (value in _CONSTANTS or value in ("\\frac", "\\sqrt"))
        )

    def group(self):
        """A braced argument, or a single token (``\\frac12``)."""
        token = self.peek()
        if token and token[1] == "{":
            self.take()
            value = self.nested(self.expression)
            self.take("}")
            return value
        return self.atom()

    def atom(self):
        kind, value = self.take()
        if kind == "number":
            return sympy.Rational(value) if "." in value else sympy.Integer(value)
        if kind == "name":
            return sympy.Symbol(value)
        if value in _CONSTANTS:
            return _CONSTANTS[value]
        if value == "\\frac":
            numerator = self.nested(self.group)
            denominator = self.nested(self.group)
            if denominator == 0:
                raise LatexParseError("division by zero")
            return numerator / denominator
        if value == "\\sqrt":
            index = None
            if self.peek() and self.peek()[1] == "[":
                self.take()
                index = self.nested(self.expression)
                self.take("]")
                if not (index.is_Integer and 1 < index <= MAX_EXPONENT):
                    raise LatexParseError("unsupported root index")
            radicand = self.nested(self.group)
            return sympy.root(radicand, index) if index is not None else sympy.sqrt(radicand)
        closing = {"(": ")", "{": "}", "[": "]"}.get(value)
        if closing:
            inner = self.nested(self.expression)
            self.take(closing)
            return inner
        raise LatexParseError(f"unsupported token {value!r}")


def parse_latex(text: str) -> sympy.Expr:
    """``text`` (a canonical answer, no ``=``/commas) as a sympy expression; ``LatexParseError`` if refused."""
    if len(text) > MAX_LENGTH:
        raise LatexParseError("expression too long to check")
    # "3\frac{1}{2}" is the mixed number 7/2 (as MATH writes it), never the product 3/2.
    tokens = _tokenize(read_mixed_numbers(text))
    if not tokens:
        raise LatexParseError("empty expression")
    parser = _Parser(tokens)
    value = parser.expression()
    if parser.peek() is not None:
        raise LatexParseError(f"unexpected {parser.peek()[1]!r}")
    return value


def expressions_equal(first: str, second: str) -> bool:
    """True when both parse and their difference simplifies to zero (may be slow: run under a time limit)."""
    try:
        a, b = parse_latex(first), parse_latex(second)
    except (LatexParseError, TypeError, ValueError, ZeroDivisionError):
        return False
    if a == b:
        return True
    difference = sympy.simplify(a - b)
    return bool(difference == 0)

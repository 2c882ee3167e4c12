"""A calculator tool for the policy: when a response ends in an arithmetic expression and ``=``, the runtime writes
the exact result after it.

Why: the bundled 135M policy picks the right operation far more often than it gets two-digit arithmetic right
(on word problems in phrasings it never trained on, most wrong answers came from a sum or a halving written wrong:
docs/training.md). GSM8K's calculator annotations (Cobbe et al., 2021) solved the same problem the same way. The
result is written as environment tokens (``env_mask`` 0, like a chunk): RL never trains the policy on them, and
they do not count as generated tokens. Only numbers and ``+ - * / x × ÷`` are read; anything else is left alone.
"""

from __future__ import annotations

import re
from fractions import Fraction

_NUM = r"\d+(?:\.\d+)?"
_OP = r"[-+*/x×÷]"
# A chain "a op b [op c ...] =" at the end of the text; the first number must not continue a longer token
# ("v2", "1,000" or "3.5.1" are not read as numbers here).
_EXPR = re.compile(rf"(?<![\w.,]){_NUM}(?:[ \t]*{_OP}[ \t]*{_NUM})+[ \t]*=[ \t]*$")
_TERM = re.compile(rf"({_NUM})|({_OP})")
_MAX_DIGITS = 15  # beyond this a result is not a number a word problem writes


_CANON = {"x": "*", "×": "*", "÷": "/"}


def evaluate(expr: str) -> Fraction:
    """The value of ``expr`` (numbers and ``+ - * / x × ÷``, usual precedence), exactly. Raises ValueError."""
    terms = [m.group(0) for m in _TERM.finditer(expr)]
    if not terms or len(terms) % 2 == 0:
        raise ValueError(f"not an expression: {expr!r}")
    nums = [Fraction(t) for t in terms[0::2]]
    ops = [_CANON.get(t, t) for t in terms[1::2]]
    addends, signs = [nums[0]], []  # products and quotients first, then the sum left to right
    for op, n in zip(ops, nums[1:], strict=True):
        if op == "*":
            addends[-1] *= n
        elif op == "/":
            if n == 0:
                raise ValueError("division by zero")
            addends[-1] /= n
        else:
            signs.append(op)
            addends.append(n)
    total = addends[0]
    for op, n in zip(signs, addends[1:], strict=True):
        total = total + n if op == "+" else total - n
    return total


def format_number(x: Fraction) -> str:
    """An integer as is; otherwise rounded to 2 decimals without trailing zeros (as a person writes it)."""
    if x.denominator == 1:
        return str(x.numerator)
    s = f"{float(x):.2f}".rstrip("0").rstrip(".")
    return "0" if s == "-0" else s


def result_for(text: str) -> str | None:
    """The text to write after ``text`` if it ends in ``<expression> =``, e.g. ``" 22"`` after ``"48 - 26 ="``;
    None if it does not, or the expression has no value (division by zero, absurdly long)."""
    m = _EXPR.search(text)
    if m is None:
        return None
    try:
        value = evaluate(m.group(0).rstrip(" \t="))
    except ValueError:
        return None
    s = format_number(value)
    if len(s.lstrip("-").replace(".", "")) > _MAX_DIGITS:
        return None
    return " " + s

"""Text that came from outside (a client's path, query or headers) made safe to print."""

from __future__ import annotations


def escape(text: str) -> str:
    """`text` with each character that is not printable written as a repr writes it
    (`\\n`, `\\x1b`, `\\u2028`): a client's decoded path, query or header cannot end our line
    and start a forged one, nor send escape sequences to the reader's terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)

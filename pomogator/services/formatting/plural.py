"""The Russian form of a noun after a number."""

from __future__ import annotations


def plural(n: int, one: str, few: str, many: str) -> str:
    """The form of the noun that goes after ``n``: ``f"{n} {plural(n, 'запрос', 'запроса', 'запросов')}"``.

    ``one`` after 1, 21, 101... (but not 11, 111), ``few`` after 2-4, 22-24... (but not 12-14), ``many`` after the
    rest, 0 included. Where the phrase needs another case, pass that case's forms: "до 21 символа" is
    ``plural(n, "символа", "символов", "символов")``.
    """
    n = abs(n)
    if n % 10 == 1 and n % 100 != 11:
        return one
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return few
    return many

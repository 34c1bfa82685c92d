"""Display widths in terminal columns, and cutting text to a width without breaking a character.

Widths are wcwidth's (CJK and emoji count two), measured on text without escape sequences. A cut
never splits a grapheme cluster (a base and its marks, joiners, skin tones, flags, tag sequences).
The only user of wcwidth.
"""

from __future__ import annotations

import unicodedata

from wcwidth import wcswidth

ELLIPSIS = "…"
Span = tuple[str, str]  # (text, SGR parameters; "" for unstyled)


def wcs(text: str) -> int:
    width = wcswidth(text)
    # -1 means a control character; cleaned text has none, so this is only a guard.
    return width if width >= 0 else len(text)


def display_width(text: str) -> int:
    """Display columns of ``text`` (no escape sequences in it): ``len`` for ASCII, else wcwidth."""
    return len(text) if text.isascii() else wcs(text)


def measure(text: str, cap: int) -> int:
    """Display width of ``text`` when it is at most ``cap``, else some number above ``cap``.

    Only a prefix of a long text is measured: the cost is bounded by the width, not the text.
    """
    if text.isascii():
        return len(text)
    if len(text) > cap + 1:
        width = wcs(text[: cap + 1])
        if width > cap:
            return width
    return wcs(text)


def _continues_cluster(text: str, index: int) -> bool:
    """Whether ``text[index]`` belongs to the grapheme cluster of ``text[index - 1]``."""
    char = text[index]
    previous = text[index - 1]
    if previous == "\u200d" or char == "\u200d":
        return True
    if char < "\u0300" or "\u3041" <= char <= "\u3096" or "\u30a1" <= char <= "\u9fff":
        return False  # Latin-1, kana, CJK: no marks among them (the test checks every one)
    code = ord(char)
    if 0x1F3FB <= code <= 0x1F3FF or 0xE0020 <= code <= 0xE007F or code in (0xFF9E, 0xFF9F):
        return True  # skin tone, emoji tag sequence, halfwidth (semi-)voiced mark
    if 0x1F1E6 <= code <= 0x1F1FF and 0x1F1E6 <= ord(previous) <= 0x1F1FF:
        run = 0  # regional indicators pair up left to right: cut only between pairs
        while index - run - 1 >= 0 and 0x1F1E6 <= ord(text[index - run - 1]) <= 0x1F1FF:
            run += 1
        return run % 2 == 1
    return unicodedata.category(char)[0] == "M"  # combining marks, variation selectors


def _solid_width(char: str) -> int:
    """1 or 2 for a character that adds exactly that many columns after another such character and
    never joins a grapheme cluster (printable ASCII; kana, CJK ideographs, fullwidth forms); 0 for
    any other character. tests/test_lineformat.py checks every one of them against wcwidth."""
    if " " <= char <= "~":
        return 1
    if ("\u4e00" <= char <= "\u9fff" or "\u3041" <= char <= "\u3096" or "\u30a1" <= char <= "\u30fa"
            or "\uff01" <= char <= "\uff5e" or char in "、。ー"):
        return 2
    return 0


def clip(text: str, columns: int, measured: tuple[int, int] | None = None) -> str:
    """The longest prefix of ``text`` at most ``columns`` wide that ends on a grapheme boundary.

    ``measured``: (length, width) of a prefix the caller has measured already.
    """
    if columns <= 0:
        return ""
    if text.isascii():
        return text[:columns]
    size = len(text)
    if measured is None:
        probe = min(size, columns)
        width = wcs(text[:probe])
    else:
        probe, width = measured
    # Search for the longest prefix that fits between low (fits) and high (does not, or size + 1),
    # from a guess in proportion to the text's own widths: for Japanese, or any text of one width,
    # the guess is exact, and one or two measurements settle it.
    if width <= columns:
        low, low_width, high = probe, width, size + 1
    else:
        high = probe
        guess = min(probe - 1, columns * probe // width)
        guess_width = wcs(text[:guess])
        if guess_width > columns:  # back by the columns too many: a column per character, usually
            high = guess
            guess = max(0, guess - (guess_width - columns))
            guess_width = wcs(text[:guess])
            if guess_width > columns:
                high, guess, guess_width = guess, 0, 0
        low, low_width = guess, guess_width
    low, high = _grow(text, columns, low, low_width, high)
    while high - low > 1:
        middle = (low + high) // 2
        if wcs(text[:middle]) <= columns:
            low = middle
        else:
            high = middle
    end = low
    while 0 < end < size and _continues_cluster(text, end):
        end -= 1
    return text[:end]


def _grow(text: str, columns: int, low: int, low_width: int, high: int) -> tuple[int, int]:
    """(low, high) closer together: low (``low_width`` wide) still fits, high still does not."""
    size = len(text)
    stalled = 1  # doubles while the characters added have no width (marks, joiners)
    while low + 1 < high and low < size:
        room = columns - low_width
        if room <= 1:
            following = _solid_width(text[low])
            if following and low_width + following > columns and (low == 0 or _solid_width(text[low - 1])):
                return low, low + 1  # the next character cannot fit, and nothing joins it to this one
        # Half the room in characters: exact for wide text, never too many (each is at most two
        # columns), and the room at least halves each time for text of any width.
        ahead = min(low + max(room // 2, stalled), high - 1, size)
        ahead_width = wcs(text[:ahead])
        if ahead_width > columns:
            return low, ahead
        stalled = stalled * 2 if ahead_width == low_width else 1
        low, low_width = ahead, ahead_width
    return low, high


def fit(text: str, columns: int) -> str:
    """``text`` if it is at most ``columns`` wide, else cut to ``columns`` with an ellipsis."""
    if text.isascii():
        return text if len(text) <= columns else text[:columns - 1] + ELLIPSIS
    probe = min(len(text), columns + 1)
    width = wcs(text[:probe])
    if width <= columns and (probe == len(text) or measure(text, columns) <= columns):
        return text
    return clip(text, columns - 1, (probe, width)) + ELLIPSIS


def cut_spans(spans: list[Span], columns: int) -> list[Span]:
    """``spans`` cut to ``columns`` with an ellipsis at the end; the caller knows they do not fit."""
    room = columns - 1  # the ellipsis takes one column
    out: list[Span] = []
    used = 0
    for text, style in spans:
        width = measure(text, room - used)
        if used + width <= room:
            out.append((text, style))
            used += width
            continue
        out.append((clip(text, room - used) + ELLIPSIS, style))
        return out
    out.append((ELLIPSIS, ""))
    return out

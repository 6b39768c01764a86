"""Titles: how a MovieLens title is cleaned for display, and the key two titles are matched by.

Both use one list of leading articles, so "Postino, Il" is moved to "Il Postino" for people and
"Il Postino", "Postino, Il" and "postino" all match the same item.
"""

from __future__ import annotations

import re
import unicodedata

ARTICLES = ("The", "A", "An", "La", "Le", "Les", "L'", "Il", "I", "Lo", "Gli", "El", "Los",
            "Las", "Das", "Der", "Die", "Det", "Den", "Un", "Une", "Da")
_ARTICLE_ALTERNATION = "|".join(re.escape(a) for a in sorted(ARTICLES, key=len, reverse=True))

# matching key: a leading article ("the matrix", "l'avventura") or a trailing one ("matrix, the")
_WORDS = "|".join(re.escape(a) for a in ARTICLES if not a.endswith("'"))
_ELIDED = "|".join(re.escape(a) for a in ARTICLES if a.endswith("'"))
_LEADING_ARTICLE_KEY = re.compile(rf"^(?:(?:{_WORDS})\s+|(?:{_ELIDED})\s*)", re.I)
_TRAILING_ARTICLE_KEY = re.compile(rf",\s*(?:{_ARTICLE_ALTERNATION})$", re.I)
_KEY_YEAR = re.compile(r"\s*\((\d{4})\)\s*$")


def normalize_title(title: str) -> tuple[str, int | None]:
    """Case-, accent- and article-insensitive key of a title, and the year if it carried one.

    "The Matrix (1999)", "matrix", "Matrix, The" all give ("matrix", 1999 or None).
    """
    t = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode() or title
    year = None
    m = _KEY_YEAR.search(t)
    if m:
        year = int(m.group(1))
        t = t[: m.start()]
    t = t.strip().lower()
    t = _TRAILING_ARTICLE_KEY.sub("", t)
    t = _LEADING_ARTICLE_KEY.sub("", t)
    t = re.sub(r"[^\w]+", " ", t).strip()
    return t, year


# display: "Shawshank Redemption, The" -> "The Shawshank Redemption"
_TRAILING_ARTICLE = re.compile(rf"^(?P<body>.+?),\s+(?P<art>{_ARTICLE_ALTERNATION})\s*$")
_TITLE_YEAR = re.compile(r"\s*\((\d{4})(?:\s*[-\u2013]\s*(?:\d{4})?)?\)\s*$")
_AKA = re.compile(r"^(a\.k\.a\.\s+)(.*)$", re.I)


def _move_article(s: str) -> str:
    """ "Shawshank Redemption, The" -> "The Shawshank Redemption"; "Avventura, L'" -> "L'Avventura"."""
    m = _TRAILING_ARTICLE.match(s.strip())
    if not m:
        return s.strip()
    art, body = m.group("art"), m.group("body").strip()
    return f"{art}{body}" if art.endswith("'") else f"{art} {body}"


def _split_trailing_parens(s: str) -> tuple[str, list[str]]:
    """ "Postman, The (Postino, Il)" -> ("Postman, The", ["Postino, Il"]) (balanced groups only)."""
    alts: list[str] = []
    s = s.rstrip()
    while s.endswith(")"):
        depth, start = 0, -1
        for i in range(len(s) - 1, -1, -1):
            if s[i] == ")":
                depth += 1
            elif s[i] == "(":
                depth -= 1
                if depth == 0:
                    start = i
                    break
        if start <= 0:  # unbalanced, or the whole title is one parenthesis: leave it alone
            break
        alts.insert(0, s[start + 1:-1])
        s = s[:start].rstrip()
    return s, alts


def clean_title(raw: str) -> tuple[str, int | None]:
    """A MovieLens-style title as people write it, and its year.

    "Toy Story (1995)" -> ("Toy Story", 1995); "Shawshank Redemption, The (1994)" ->
    ("The Shawshank Redemption", 1994); "Postman, The (Postino, Il) (1994)" ->
    ("The Postman (Il Postino)", 1994). A year range "(2006–2007)" gives its first year.
    """
    t = raw.strip()
    year = None
    m = _TITLE_YEAR.search(t)
    if m and m.start() > 0:
        year = int(m.group(1))
        t = t[: m.start()]
    main, alts = _split_trailing_parens(t)
    parts = [_move_article(main)]
    for a in alts:
        aka = _AKA.match(a.strip())
        parts.append(f"({aka.group(1)}{_move_article(aka.group(2))})" if aka else f"({_move_article(a)})")
    title = " ".join(p for p in parts if p).strip()
    return (title or raw.strip()), year


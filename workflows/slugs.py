"""Human-friendly, URL-safe asset slugs and "did you mean" suggestions."""

from __future__ import annotations

import difflib
import re
import unicodedata

MAX_SLUG = 64
SLUG_PATTERN = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


def slugify(name: str) -> str:
    """Derive a slug from a name: ASCII, lowercase, words joined by hyphens."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return slug[:MAX_SLUG].rstrip("-")


def slug_problem(slug: str) -> str | None:
    """Why `slug` is not acceptable, or None when it is."""
    if not slug:
        return "A slug needs at least one letter or digit."
    if len(slug) > MAX_SLUG:
        return f"Keep the slug to {MAX_SLUG} characters or fewer."
    if not SLUG_PATTERN.match(slug):
        return "Use lowercase letters, digits and single hyphens, like fraud-scorer-v2."
    return None


def closest(word: str, candidates: list[str], *, limit: int = 3) -> list[str]:
    """Up to `limit` candidates closest to `word`, best first."""
    word = word.lower()
    prefixed = [c for c in candidates if c.startswith(word) or word in c]
    fuzzy = difflib.get_close_matches(word, candidates, n=limit, cutoff=0.5)
    return list(dict.fromkeys(fuzzy + sorted(prefixed, key=len)))[:limit]

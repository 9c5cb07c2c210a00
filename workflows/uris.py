"""What counts as a URI for an asset's location or a document's address."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# Two characters at least: a one-letter "scheme" is a Windows drive (C:\\data), not a URI.
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]+$")
_UNSAFE_SCHEMES = {"javascript", "data", "vbscript"}


def uri_problem(value: str, *, schemes: tuple[str, ...] | None = None) -> str | None:
    """Why `value` is not a URI (optionally limited to `schemes`), or None when it is."""
    if any(ch.isspace() for ch in value):
        return "A URI cannot contain spaces."
    parts = urlsplit(value)
    if not parts.scheme or not _SCHEME.match(parts.scheme) or ":" not in value:
        return "Enter a full URI with a scheme, like s3://bucket/path or https://example.com/page."
    if parts.scheme.lower() in _UNSAFE_SCHEMES:
        return f"{parts.scheme}: addresses are not allowed."
    if schemes and parts.scheme.lower() not in schemes:
        return f"Use a {' or '.join(schemes)} address."
    if not (parts.netloc or parts.path.strip("/")):
        return "This URI has a scheme but nothing after it."
    if parts.scheme.lower() in ("http", "https") and not parts.netloc:
        return "A web address needs a host, like https://example.com/page."
    return None

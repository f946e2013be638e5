"""Keep credentials out of everything the toolkit prints or stores."""

import re
from urllib.parse import unquote

_USERINFO = re.compile(r"(mongodb(?:\+srv)?://)([^:@/\s]+):([^@/\s]+)@", re.IGNORECASE)

_known_secrets: set[str] = set()


def remember_secret_of(url: str) -> None:
    """Also mask this URL's password where it appears on its own, e.g. in a driver's message."""
    for match in _USERINFO.finditer(url or ""):
        for secret in {match.group(3), unquote(match.group(3))}:
            if len(secret) >= 3:
                _known_secrets.add(secret)


def redact(text: str) -> str:
    """`mongodb://admin:s3cret@host` -> `mongodb://admin:****@host`, and any remembered password -> ****."""
    text = _USERINFO.sub(r"\1\2:****@", str(text))
    for secret in _known_secrets:
        text = text.replace(secret, "****")
    return text

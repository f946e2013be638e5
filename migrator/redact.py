"""Keep credentials out of everything the toolkit prints or stores: the one helper for it.

`redact(text)` masks a credential where it stands, never every occurrence of its text:
- the password of a MongoDB URL (`mongodb://user:****@host`), running to the last `@` before the hosts,
  as PyMongo splits it, so `@`, `:` and percent-escapes inside it are covered;
- the values of URL options and properties that are secrets (`tlsCertificateKeyFilePassword=****`,
  `authMechanismProperties=AWS_SESSION_TOKEN:****`), keeping the names and the safe properties;
- the value of a key that names a secret (`password=****`, `"password": "****"`, `'pwd': '****'`,
  `AWS_SESSION_TOKEN:****`): keys ending in password, passwd, pwd, secret or token.
So a database `adv_secret_test` or the word "password" in a hint stay as they are, whatever the password.

What is remembered (`remember_secret_of`, called where MONGODB_URL is read) is only the configured URL's
password and secret option values, to mask them at those same places with their exact extent, where a
pattern alone cannot tell where they end (PyMongo accepts a space or a quote in a password; a raw `/`
in one is rejected, but the URL is still shown in the error). A remembered secret is not masked on its
own elsewhere: nothing repeats it bare. PyMongo's (4.20) URL errors name no part of a password, its
client repr leaves out the sensitive options and authMechanismProperties, the authMechanismProperties
check avoids echoing the token (pymongo/common.py, uri_parser_shared.py); mongodump gets the URL in a
config file and reports a conflicting password without its value; no server sends a password back.
Only a migration's own code could print a password bare, with no URL or key around it; that is not
masked, as a bare text match is what turned `adv_secret_test` into `adv_secret_****`. The log filter
(migrator.output) applies `redact` to every log line and traceback; what is stored (changelog) and printed
(say, table) goes through it too.
"""

import re
from urllib.parse import unquote, unquote_plus

MASK = "****"

# scheme://user:password@ -- the password runs to the last `@` before a `/`, `?`, `#`, quote or space.
# A mistyped scheme (`mongodb//`, `mongodb:/`) still carries a password.
_SCHEME = r"mongodb(?:\+srv)?(?::/{1,2}|//)"
_URL_PASSWORD = re.compile(rf"""({_SCHEME}[^\s:/?#@"'<>\[\]]*:)([^\s/?#"'<>]+)(?=@)""", re.IGNORECASE)
# scheme://user%3Apassword@ -- userinfo percent-encoded whole (no `:` to split it at): all of it is masked
_WHOLE_USERINFO = re.compile(rf"""({_SCHEME})([^\s:/?#@"'<>]*%3A[^\s:/?#"'<>]*)(?=@)""", re.IGNORECASE)
# authMechanismProperties=KEY:value,KEY:value (`:` and `,` may be percent-encoded)
_MECHANISM_PROPERTIES = re.compile(r"""(authMechanismProperties=)([^\s&;"'<>]+)""", re.IGNORECASE)
_PROPERTY = re.compile(r"(^|,|%2C)(\w+)(:|%3A)((?:(?!,|%2C).)*)", re.IGNORECASE)
_SAFE_PROPERTIES = {"SERVICE_NAME", "SERVICE_HOST", "SERVICE_REALM", "CANONICALIZE_HOST_NAME", "ENVIRONMENT",
                    "TOKEN_RESOURCE", "ALLOWED_HOSTS"}  # PyMongo shows these in its repr: not secrets
# a key naming a secret, then its value. A quoted key (JSON, a Python dict) takes `:` or `=` with spaces
# around; a bare one `=`, or `:` with the value right after it (AWS_SESSION_TOKEN:x), so that
# "store_api_token: applying" (a migration's name, then what happens to it) stays as it is.
_SECRET_KEY = r"[\w.-]*(?:password|passwd|pwd|secret|token)"
_VALUE = r"""(?P<value>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s&,;)\]}"'<>]+)"""
_KEY_VALUE = re.compile(
    rf"""((?<![\w./-])(?:(?P<quote>["']){_SECRET_KEY}(?P=quote)\s*[:=]\s*|{_SECRET_KEY}(?:\s*=\s*|:)(?=[^\s])))"""
    + _VALUE, re.IGNORECASE)
_OPTION = re.compile(r"[?&;]([^=&;]+)=([^&;]*)")

_remembered: list[re.Pattern] = []


def remember_secret_of(url: str) -> None:
    """Mask this URL's password and secret options with their exact extent, also where a pattern would stop short."""
    url = (url or "").strip()
    scheme = re.match(_SCHEME, url, re.IGNORECASE)
    if not scheme:
        return
    authority = url[scheme.end():].partition("?")[0]
    candidates = {authority.partition("/")[0], authority}  # as PyMongo splits it, and past a raw `/` in it
    for userinfo in (text.rpartition("@")[0] for text in candidates):
        if ":" in userinfo:
            _remember(rf"({_SCHEME}[^\s:/?#@]*:)", userinfo.partition(":")[2], r"(?=@)")
    for name, value in _OPTION.findall(url):
        if re.fullmatch(_SECRET_KEY, name, re.IGNORECASE):
            _remember(rf"([?&;]{re.escape(name)}=)", value, r"(?=[&;\s\"']|$)")


def _remember(before: str, secret: str, after: str) -> None:
    for form in {secret, unquote(secret), unquote_plus(secret)} - {""}:
        pattern = re.compile(before + re.escape(form) + after, re.IGNORECASE)
        if pattern not in _remembered:
            _remembered.append(pattern)


def redact(text) -> str:
    """`mongodb://admin:s3cret@host` -> `mongodb://admin:****@host`; `password=s3cret` -> `password=****`."""
    text = str(text)
    for pattern in sorted(_remembered, key=lambda p: len(p.pattern), reverse=True):  # a longer form first
        text = pattern.sub(rf"\1{MASK}", text)
    text = _URL_PASSWORD.sub(rf"\1{MASK}", text)
    text = _WHOLE_USERINFO.sub(rf"\1{MASK}", text)
    text = _MECHANISM_PROPERTIES.sub(lambda m: m.group(1) + _PROPERTY.sub(_mask_property, m.group(2)), text)
    return _KEY_VALUE.sub(_mask_value, text)


def _mask_property(match: re.Match) -> str:
    before, key, separator, _ = match.groups()
    return match.group(0) if key.upper() in _SAFE_PROPERTIES else f"{before}{key}{separator}{MASK}"


def _mask_value(match: re.Match) -> str:
    key, value = match.group(1), match.group("value")
    if value[:1] in "\"'" and len(value) > 1:
        return f"{key}{value[0]}{MASK}{value[0]}"
    return f"{key}{MASK}"

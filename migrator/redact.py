"""Keep credentials out of everything the toolkit prints or stores: the one helper for it.

`redact(text)` masks the password of every MongoDB URL in `text`, the values of URL options that
carry secrets, and every secret remembered from the URL the toolkit was given (`remember_secret_of`,
called where MONGODB_URL is read), so a password is masked also where a driver, a tool or a migration
repeats it on its own, decoded or not. The log filter (migrator.output) applies it to every log line
and traceback; what is stored (changelog, backups) and printed (say, table) goes through it too.
"""

import re
from urllib.parse import unquote, unquote_plus

# user:password@ of a MongoDB URL. The password runs to the last `@` before the host list, as PyMongo
# reads it; one holding spaces is masked as a remembered secret.
_USERINFO = re.compile(r"(mongodb(?:\+srv)?://)([^:@/\s]+):([^/\s]*)@", re.IGNORECASE)
# URL options whose values are secrets: a client key's password, AWS session tokens and the like
_SECRET_OPTIONS = re.compile(r"([?&;](?:tlsCertificateKeyFilePassword|authMechanismProperties)=)([^&;#\s]+)",
                             re.IGNORECASE)
_SECRET_PROPERTY = re.compile(r"TOKEN|SECRET|PASSWORD", re.IGNORECASE)
_SCHEME = re.compile(r"mongodb(?:\+srv)?://", re.IGNORECASE)

_known_secrets: set[str] = set()


def _remember(secret: str) -> None:
    for form in {secret, unquote(secret), unquote_plus(secret)}:
        if len(form) >= 3:
            _known_secrets.add(form)


def remember_secret_of(url: str) -> None:
    """Also mask this URL's password and secret options wherever they appear on their own."""
    url = url or ""
    for scheme in _SCHEME.finditer(url):
        userinfo, at, _ = url[scheme.end():].split("/", 1)[0].rpartition("@")  # as PyMongo splits it
        if at and ":" in userinfo:
            _remember(userinfo.partition(":")[2])
    for option in _SECRET_OPTIONS.finditer(url):
        name, value = option.group(1).strip("?&;=").lower(), option.group(2)
        if name == "authmechanismproperties":  # KEY:value,KEY:value; only the secret ones (not SERVICE_NAME)
            for key, _, secret in (part.partition(":") for part in unquote(value).split(",")):
                if _SECRET_PROPERTY.search(key):
                    _remember(secret)
        else:
            _remember(value)


def redact(text) -> str:
    """`mongodb://admin:s3cret@host` -> `mongodb://admin:****@host`, and any remembered secret -> ****."""
    text = _USERINFO.sub(r"\1\2:****@", str(text))
    text = _SECRET_OPTIONS.sub(r"\1****", text)
    for secret in sorted(_known_secrets, key=len, reverse=True):
        text = text.replace(secret, "****")
    return text

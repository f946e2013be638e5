"""Masking, no server: every URL the driver accepts keeps its password hidden, and nothing else is touched.

A credential is masked where it stands (a URL's userinfo, a secret URL option, a `password=` or
`"password": ` pair), never wherever its text appears: a database `adv_secret_test` keeps its name
when the password is `test`.
"""

import json
import logging

import pytest
from pymongo.uri_parser import parse_uri

from migrator.output import _RedactFilter
from migrator.redact import redact, remember_secret_of

# (URL, as it must print); every one is accepted by PyMongo (checked below)
ACCEPTED = [
    ("mongodb://admin:Kq7secret@db.example:27017/app", "mongodb://admin:****@db.example:27017/app"),
    ("mongodb://u:Kq7pw@h1:27017,h2:27018,h3/app?replicaSet=rs0&authSource=admin",
     "mongodb://u:****@h1:27017,h2:27018,h3/app?replicaSet=rs0&authSource=admin"),
    ("mongodb://u:Kq7pw@[::1]:27017/app", "mongodb://u:****@[::1]:27017/app"),
    ("mongodb://u:Kq7pw@[::1]:27017,[fe80::1%25eth0]:27018/", "mongodb://u:****@[::1]:27017,[fe80::1%25eth0]:27018/"),
    ("mongodb://[::1]:27017/app", "mongodb://[::1]:27017/app"),
    ("mongodb://u:Zx9%21S3cr3t%40Pa55@h/", "mongodb://u:****@h/"),  # percent-encoded
    ("mongodb://u:a%40Kq7%3Ab%2Fc@h:1/app", "mongodb://u:****@h:1/app"),  # `@`, `:` and `/` inside, encoded
    ("mongodb://user%40corp:Kq7pw@h/", "mongodb://user%40corp:****@h/"),  # an encoded `@` in the user
    ("mongodb://u@h/?authMechanism=MONGODB-X509", "mongodb://u@h/?authMechanism=MONGODB-X509"),  # no password
    ("mongodb://h/?authSource=admin", "mongodb://h/?authSource=admin"),
    ("mongodb://u:Kq7pw@h/?tls=true&tlsCertificateKeyFilePassword=Kf7keypass&tlsAllowInvalidHostnames=false",
     "mongodb://u:****@h/?tls=true&tlsCertificateKeyFilePassword=****&tlsAllowInvalidHostnames=false"),
    ("mongodb://h/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:Tk3token",
     "mongodb://h/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:****"),
    ("mongodb://h/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN%3ATk3token%2CSERVICE_NAME%3Ax",
     "mongodb://h/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN%3A****%2CSERVICE_NAME%3Ax"),
    ("mongodb://u@h/?authMechanism=GSSAPI&authMechanismProperties=SERVICE_NAME:mongodb,CANONICALIZE_HOST_NAME:true",
     "mongodb://u@h/?authMechanism=GSSAPI&authMechanismProperties=SERVICE_NAME:mongodb,CANONICALIZE_HOST_NAME:true"),
]
SRV = [  # parse_uri would look the SRV record up: not checked against the driver here
    ("mongodb+srv://u:Kq7pw@cluster0.abcde.mongodb.net/app?retryWrites=true&w=majority",
     "mongodb+srv://u:****@cluster0.abcde.mongodb.net/app?retryWrites=true&w=majority"),
    ("MONGODB+SRV://u:Kq7pw@cluster0.example/", "MONGODB+SRV://u:****@cluster0.example/"),
]


@pytest.mark.parametrize("url, shown", ACCEPTED + SRV)
def test_every_url_the_driver_accepts_prints_without_its_secrets(url, shown):
    if not url.lower().startswith("mongodb+srv"):
        parsed = parse_uri(url, validate=True)
        secrets = [parsed["password"], parsed["options"].get("tlsCertificateKeyFilePassword"),
                   (parsed["options"].get("authMechanismProperties") or {}).get("AWS_SESSION_TOKEN")]
        assert not any(secret and secret in redact(url) for secret in secrets)
    assert redact(url) == shown


@pytest.mark.parametrize("around", [
    "{}", "'{}'", '"{}"', "<{}>", "({})", "cannot reach {}.", "cannot reach {}, retrying", "at {}: refused",
    "MONGODB_URL={}", "url: {}\nnext line",
])
def test_a_url_in_text_is_masked_where_it_stands(around):
    assert redact(around.format("mongodb://u:Kq7pw@h:1/app")) == around.format("mongodb://u:****@h:1/app")
    assert redact(around.format("mongodb://u:Kq7pw@h")) == around.format("mongodb://u:****@h")


def test_a_url_inside_json_keeps_the_json_whole():
    text = json.dumps({"url": "mongodb://u:Kq7pw@h", "contact": "dba@example.com", "n": 1}, separators=(",", ":"))
    assert json.loads(redact(text)) == {"url": "mongodb://u:****@h", "contact": "dba@example.com", "n": 1}
    spaced = json.dumps({"error": "no route to mongodb://u:Kq7pw@h:1/app?authSource=admin"})
    assert json.loads(redact(spaced)) == {"error": "no route to mongodb://u:****@h:1/app?authSource=admin"}


def test_several_urls_on_one_line_are_each_masked():
    assert (redact("from mongodb://a:Kq7one@h1/x to mongodb+srv://b:Kq7two@h2,mongodb://c:Kq7three@h3")
            == "from mongodb://a:****@h1/x to mongodb+srv://b:****@h2,mongodb://c:****@h3")


def test_a_raw_at_sign_in_the_password_is_masked_as_pymongo_splits_it():
    """PyMongo takes the userinfo up to the last `@` before the host list (and then refuses the raw `@`);
    the URL is shown in that error message, so it is masked the same way."""
    url = "mongodb://u:Kq7@p@ss@db.example:27017/app"
    assert redact(url) == "mongodb://u:****@db.example:27017/app"
    assert redact("mongodb://u:Kq7:p@ss@[::1]/") == "mongodb://u:****@[::1]/"


def test_a_mistyped_scheme_still_hides_the_password():
    for typo in ("mongodb//", "mongodb:/", "mongodb+srv//"):
        assert redact(f"not a URL: {typo}u:Kq7pw@h/app") == f"not a URL: {typo}u:****@h/app"


def test_the_configured_password_is_masked_to_its_exact_end_even_where_a_pattern_stops():
    """PyMongo accepts a space or a quote in a password; a raw `/` it refuses, but the URL is still shown."""
    for url, shown in [
        ("mongodb://u:Wq8 spaced pass@h:1/app", "mongodb://u:****@h:1/app"),
        ('mongodb://u:Wq8"quoted\'pass@h/', "mongodb://u:****@h/"),
        ("mongodb://u:Wq8/slashed@h/app", "mongodb://u:****@h/app"),
        ("mongodb://u:pw@h/?tls=true&tlsCertificateKeyFilePassword=Kf7 spaced key",
         "mongodb://u:****@h/?tls=true&tlsCertificateKeyFilePassword=****"),
    ]:
        remember_secret_of(f"  {url} ")
        assert redact(f"failed: {url} (retrying)") == f"failed: {shown} (retrying)"


@pytest.mark.parametrize("text, shown", [
    ("password=Kq7pw", "password=****"),
    ("--password=Kq7pw --db app", "--password=**** --db app"),
    ("MONGODB_PASSWORD = Kq7pw", "MONGODB_PASSWORD = ****"),
    ('{"user": "u", "password": "Kq7 \\"pw"}', '{"user": "u", "password": "****"}'),
    ("{'createUser': 'u', 'pwd': 'Kq7pw', 'roles': []}", "{'createUser': 'u', 'pwd': '****', 'roles': []}"),
    ("{'AWS_SESSION_TOKEN': 'Tk3token'}", "{'AWS_SESSION_TOKEN': '****'}"),
    ("properties AWS_SESSION_TOKEN:Tk3token,SERVICE_NAME:x", "properties AWS_SESSION_TOKEN:****,SERVICE_NAME:x"),
    ("client_secret=Kq7; next", "client_secret=****; next"),
    ("https://api.example/v1?access_token=Tk3token&page=2", "https://api.example/v1?access_token=****&page=2"),
])
def test_a_secret_in_a_key_value_pair_is_masked(text, shown):
    assert redact(text) == shown


@pytest.mark.parametrize("text", [
    "check the user name, password and authSource",
    "store_api_token: applying (keep the API token of each user)",
    "rotate_secret_keys: ok (3 documents)",
    "the non-token events of Flowise streaming responses",
    "backup: 3 documents of chat_messages saved to /srv/backups/adv_secret_test-add_metadata-apply-2025.jsonl.gz",
    "FileNotFoundError: [Errno 2] No such file or directory: '/run/secrets/token'",
    "Wrong type for tlsCertificateKeyFilePassword, value must be an instance of str",
    "lock held by host:4242:9f3a (since 12:00:01)",
])
def test_words_that_only_look_like_secrets_are_left_alone(text):
    assert redact(text) == text


def test_a_short_password_is_not_masked_inside_other_words():
    """Password `test`: the database adv_secret_test and the backup path keep their names (was adv_secret_****)."""
    url = "mongodb://migrator:test@db.example:27017/adv_secret_test?authMechanism=PLAIN"
    remember_secret_of(url)
    path = "/srv/backups/adv_secret_test-add_metadata_to_chat_messages-apply-20250101T000000Z.jsonl.gz"
    assert redact(f"database adv_secret_test at {url}") == ("database adv_secret_test at mongodb://migrator:****"
                                                            "@db.example:27017/adv_secret_test?authMechanism=PLAIN")
    assert redact(f"saved to {path}") == f"saved to {path}"
    assert redact("a test of tests") == "a test of tests"


def test_a_common_password_does_not_mask_the_hint():
    """Password `password`: "check the user name, password and authSource" (was "..., **** and authSource")."""
    url = "mongodb://migrator:password@db.example:27017/app?authSource=admin"
    remember_secret_of(url)
    message = (f"authentication to db.example:27017 failed ({url}): check the user name, password and authSource")
    assert redact(message) == ("authentication to db.example:27017 failed (mongodb://migrator:****@db.example:27017/"
                               "app?authSource=admin): check the user name, password and authSource")


def test_masking_twice_changes_nothing_more():
    once = redact("mongodb://u:Kq7pw@h/?tlsCertificateKeyFilePassword=Kf7 and password='x'")
    assert redact(once) == once and "Kq7pw" not in once and "Kf7" not in once


def test_the_log_filter_masks_the_message_and_its_arguments():
    record = logging.LogRecord("migrator", logging.INFO, __file__, 1, "database %s at %s", ("adv_secret_test",
                               "mongodb://migrator:test@h/adv_secret_test"), None)
    assert _RedactFilter().filter(record)
    assert record.getMessage() == "database adv_secret_test at mongodb://migrator:****@h/adv_secret_test"


def test_redact_masks_userinfo_and_a_password_where_it_stands():
    assert redact("mongodb://admin:p%40ss@h:1/db?x=1") == "mongodb://admin:****@h:1/db?x=1"
    assert redact("mongodb+srv://u:v@cluster.example/") == "mongodb+srv://u:****@cluster.example/"
    assert redact("mongodb://h:1/db") == "mongodb://h:1/db"
    remember_secret_of("mongodb://admin:Zq9-distinct@h/")
    assert redact("server said: bad password=Zq9-distinct") == "server said: bad password=****"


def test_userinfo_percent_encoded_whole_is_masked_whole_and_other_text_is_left_alone():
    line = "MONGODB_URL has an invalid option (mongodb://admin%3AZq9SecretPa55@127.0.0.1:9/): A password is required"
    assert redact(line) == "MONGODB_URL has an invalid option (mongodb://****@127.0.0.1:9/): A password is required"
    assert redact("mongodb://admin@127.0.0.1:9/ and 50%3A50") == "mongodb://admin@127.0.0.1:9/ and 50%3A50"

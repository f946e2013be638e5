"""The runner's own client options against the app's URL (migrator.connection): what it drops, what it replaces and
says so, in one line; and a restore's refused write named without the document's bytes (migrator.backup)."""

import bson
from bson.raw_bson import RawBSONDocument
from pymongo.errors import BulkWriteError

from migrator.backup.restoring import write_error
from migrator.connection import ignored_options, runner_url
from migrator.rawbson import RAW

URL = "mongodb://app:S3cret@db1:27017,db2:27017/flowise?authSource=admin"


def test_options_of_other_read_preferences_are_dropped_whatever_their_case_and_the_rest_kept():
    url = URL + "&readPreference=secondary&MAXSTALENESSSECONDS=120&readPreferenceTags=dc:ny&readPreferenceTags=&hedge=x"
    assert runner_url(url) == URL + "&readPreference=secondary"
    assert runner_url(URL) == URL
    assert runner_url("mongodb://db1/?maxStalenessSeconds=90") == "mongodb://db1/"


def test_every_option_replaced_or_dropped_is_named_as_written_and_no_other():
    url = URL + ("&readPreference=nearest&readPreferenceTags=dc:ny&w=1&journal=false&wtimeoutMS=1"
                 "&retryWrites=true&appName=proxy")
    assert ignored_options(url) == {"readPreference": "nearest", "readPreferenceTags": "dc:ny", "w": "1",
                                    "journal": "false", "wtimeoutMS": "1"}
    assert ignored_options(URL + "&w=majority&readPreference=primary&journal=true") == {}


def test_a_refused_restore_write_is_named_by_its_id_and_code_not_its_bytes():
    document = RawBSONDocument(bson.encode({"_id": 7, "secret": "token-123"}), RAW)
    error = BulkWriteError({"writeErrors": [{"index": 1, "code": 11000, "errmsg": "E11000 duplicate key",
                                             "op": document}], "writeConcernErrors": [], "nInserted": 0})
    said = write_error(error, [6, 7])
    assert said == "BulkWriteError at _id 7: code 11000: E11000 duplicate key"
    assert "RawBSONDocument" not in said and "token-123" not in said

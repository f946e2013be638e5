"""Documents as their exact bytes: how backups, restores and the self-test's scratch copies read, write and
compare them, whatever codec options the client's URL asks for."""

import bson
from bson.binary import UuidRepresentation
from bson.codec_options import CodecOptions, DatetimeConversion
from bson.raw_bson import RawBSONDocument

# Every BSON type comes back byte for byte: UUIDs of subtype 3 and 4, dates outside years 1-9999, int64, ...
RAW = CodecOptions(document_class=RawBSONDocument, uuid_representation=UuidRepresentation.UNSPECIFIED,
                   datetime_conversion=DatetimeConversion.DATETIME_AUTO)


def id_key(value) -> bytes:
    """An `_id` of any type (an embedded document too) as its BSON: a dict key that tells 1 from 1.0 and "1"."""
    return bson.encode({"_id": value}, codec_options=RAW)

"""The toolkit's version, recorded in every changelog entry and backup manifest."""

__version__ = "0.3.0"

"""The unit tier: no server, no Go, no subprocess (`pytest tests/unit`). A package, so that its module
names never clash with the server tier's in tests/."""

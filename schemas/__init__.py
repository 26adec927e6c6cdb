"""JSON Schemas (draft 2020-12) for settings files and API messages. Read with importlib.resources."""

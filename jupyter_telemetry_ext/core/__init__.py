"""The library: schemas, categories, the allow-list, redaction, EventLog, EventRouter."""

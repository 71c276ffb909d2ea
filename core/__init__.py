"""Plumbing every app shares: the application error and its HTTP mapping, OpenAPI helpers,
parsers, throttling, fields, the Redis client, the channel sender, logging and metrics.
Imports nothing of the apps above it (see the import contract in pyproject.toml)."""

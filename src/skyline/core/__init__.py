"""Core: types, errors, patterns and time helpers. Imports nothing else from skyline."""

"""The run directory: its schema (column names and types), the append-only writer and the reader."""

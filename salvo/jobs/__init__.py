"""NAF-code jobs over a SIRENE Parquet: codes, templates, job files, the builder and synthetic data."""

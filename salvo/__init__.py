"""Salvo's domain logic: plain, typed functions and value types. Never imports Prefect."""

__version__ = "0.1.0"

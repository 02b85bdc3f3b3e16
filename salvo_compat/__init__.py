"""The seeds' Python APIs, kept for their users (``salvo_compat.batch_framework``: seed 001)."""

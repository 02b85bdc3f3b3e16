"""Multi-day dataset generation: assembly IDs, the ledger, the experiments, and re-assembly.

Plain domain logic (no Prefect): ``ids`` (assembly IDs and names), ``ledger`` (race-free ledger on
any storage), ``config`` / ``cascade`` / ``experiments`` (the seed's three experiments and user
generators), ``run`` (the steps of one run), ``reassemble`` (streaming re-assembly), ``discover``.
"""

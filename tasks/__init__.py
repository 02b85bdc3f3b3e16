"""Salvo's Prefect tasks (salvo's functions wrapped as tasks).

Importing this package writes nothing: the environment Prefect reads when imported is set by the
entry points (`cli.main.main`, and the import hook `flows` installs for a flow called from Python;
see `deployments.prefect_patches.set_environment_defaults`).
"""

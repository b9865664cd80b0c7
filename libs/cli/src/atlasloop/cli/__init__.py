"""The ``atlasloop`` command. Each subcommand is a module with ``register(subparsers)``."""

"""One module per command, each with ``add_parser(subparsers)`` (its flags) and ``run(args)``."""

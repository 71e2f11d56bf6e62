"""The top layer: the `keywarden` command line and the commands that are more than a service's own
(the demo, reports, the leaked-key scanner, pricing quotes, configuration, event validation).

Nothing below this package imports it; `main.py` composes every component's sub-commands.
"""

from keywarden.cli.main import build_parser, main

__all__ = ["build_parser", "main"]

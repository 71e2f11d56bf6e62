"""`python -m keywarden.cli.report report spend --by team`, outside the `keywarden` command."""

import sys

from keywarden.cli.report.commands import main

sys.exit(main())

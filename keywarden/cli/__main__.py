"""`python -m keywarden.cli …`: the same command line as the `keywarden` script."""

import sys

from keywarden.cli.main import main

sys.exit(main())

"""`python -m keywarden.report report spend --by team --month 2026-11`, before the CLI mounts it."""

import sys

from keywarden.report.commands import main

sys.exit(main())

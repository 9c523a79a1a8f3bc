"""``python -m explorer …`` — the same as the ``explorer`` console script."""

from explorer.cli import main

raise SystemExit(main())

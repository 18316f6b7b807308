"""``python -m pgclip.worker --help``."""

from pgclip.worker.cli import main

raise SystemExit(main())

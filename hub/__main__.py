"""`python -m hub` runs the command-line interface."""

from __future__ import annotations

from hub.cli import main

raise SystemExit(main())

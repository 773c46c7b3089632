"""`engine-hub tui`: a terminal monitor that follows a hub over its HTTP API and SSE stream."""

"""Live views and their fan-outs: what browsers and SSE subscribers see, rendered once per tick."""

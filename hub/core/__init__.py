"""The sans-I/O core: decoding, the engine protocol state machine, hub state, health, rings, metrics.

Nothing here imports starlette, uvicorn, jinja2, sqlite3 or asyncio, reads a clock or does I/O."""

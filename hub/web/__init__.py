"""The I/O shell: the Starlette app, its endpoints, the runtime that owns every task, uvicorn."""

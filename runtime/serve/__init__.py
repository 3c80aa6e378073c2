"""The HTTP server (``python -m runtime.serve``) and its defences: connection deadlines and limits,
request bodies, bounded stages off the event loop, sandboxed decoding, the access log."""

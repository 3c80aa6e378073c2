"""Fetching an image from a URL: one deadline, byte and line caps, every address checked
(no private or metadata addresses unless allowed)."""

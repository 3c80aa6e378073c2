"""Checks on strangers' files before they are used: model files' hashes against the manifest, and
image headers whose decoding cost their pixel count does not bound."""

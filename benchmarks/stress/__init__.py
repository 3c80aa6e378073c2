"""Stress and attack tools: hostile image files, HTTP and image fuzzers, the hostile-client
attack and the server load test."""

"""Serving: the Recognizer, result types, batching, sources, live streams, writers and corpus runs."""

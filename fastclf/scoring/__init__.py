"""Scoring: streaming files, Ray Data and the HTTP server."""

"""Prefect flows and the command line that triggers them."""

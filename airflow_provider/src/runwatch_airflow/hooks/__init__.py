"""Hooks of the runwatch provider."""

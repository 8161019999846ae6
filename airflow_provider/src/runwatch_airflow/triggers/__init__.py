"""Triggers of the runwatch provider."""

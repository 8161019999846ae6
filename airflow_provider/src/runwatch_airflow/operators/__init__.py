"""Operators of the runwatch provider."""

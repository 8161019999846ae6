"""Sensors of the runwatch provider."""

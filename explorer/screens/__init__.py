"""Screens of the explorer app."""

"""Widgets of the explorer app."""

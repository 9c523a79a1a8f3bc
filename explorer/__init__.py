"""The landscape explorer's user interfaces: the Textual app and the ``explorer`` CLI.

Importing this package is cheap: the app (Textual) and the numerics (JAX) are imported
only by the commands that need them.
"""

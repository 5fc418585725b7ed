"""Utilities every layer uses: typed configs, user errors, atomic files, seeds, progress lines."""

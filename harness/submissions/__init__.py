"""Leaderboard submissions: manifests, exports, validation and loading (see model.py)."""

"""stepwise: a benchmark and leaderboard harness for reasoning strategies in text-to-image generation."""

__version__ = "0.1.0"

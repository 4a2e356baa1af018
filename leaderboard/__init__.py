"""The static leaderboard site: `leaderboard.build.build_site` (its docstring lists the pages and
the ids, classes and data attributes browser tests rely on); `stepwise leaderboard build|serve`."""

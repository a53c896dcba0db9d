"""Portfolio scoring: a whole book re-scored with one registered version (`python -m portfolio.score`)."""

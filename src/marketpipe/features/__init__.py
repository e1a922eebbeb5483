"""Features: bars, window features and indicators (pure transforms; Spark job to come)."""

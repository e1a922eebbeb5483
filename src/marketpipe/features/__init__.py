"""Features: the Spark streaming job, its bars, window features and indicators, and checks."""

"""The local stack: real stand-in services (Kafka-API broker, PostgreSQL, S3) as processes."""

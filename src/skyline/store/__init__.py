"""Storage: the Redis hot store and the SQL event store."""

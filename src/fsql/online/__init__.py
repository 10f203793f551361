"""The online path: key/value encoding, the Redis store, sync."""

"""What a request costs and who pays: rate limits and token quotas, the tokens each call used, the usage
record of every request and the counters behind /metrics, all written through the outbox so a busy pool
or a Redis restart delays them without losing any."""

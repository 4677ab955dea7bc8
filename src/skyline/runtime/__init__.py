"""What every long-running component shares: its context, loops with backoff, logging."""

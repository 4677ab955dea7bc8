"""Alert channels (SMTP, Slack, PagerDuty, webhook, Alertmanager, syslog): what an alert says
and how each channel sends it. Shared logic: the alerters deliver queued alerts through them,
and Thunder sends its own alerts through them directly (it must not depend on the queue, in
SQL, or the stream, in Redis, when those are what is down)."""

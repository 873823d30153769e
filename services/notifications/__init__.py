"""Notifications: events people must hear about, queued in an outbox and sent to Slack and e-mail."""

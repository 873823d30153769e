"""PortOne's webhooks, V1 and V2: record every delivery, verify it against PortOne, and the webhook log."""

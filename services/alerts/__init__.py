"""Alerts: differences between our records and PortOne's, stored one per kind and payment, and the alert desk."""

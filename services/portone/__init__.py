"""PortOne gateway: our own typed view of PortOne, and the adapters that speak to it."""

"""Orders and payments: the amount decided on the server, verification against PortOne, search and detail."""

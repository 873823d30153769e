"""Who someone is and what they may do: accounts, roles and permissions, sign-in sessions."""

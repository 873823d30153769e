"""What every room shares and no room owns: settings, database, tables, errors, money, KST days, masking, job locks.

Imports nothing of the domain rooms (an import contract checks it)."""

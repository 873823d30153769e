"""Several processes on one PostgreSQL database: two APIs, two dashboards, the scheduler, as subprocesses."""

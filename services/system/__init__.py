"""The process around the product: health checks and the demo data of make run."""

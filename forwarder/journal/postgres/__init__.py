"""The PostgreSQL state backend (``state: {backend: postgresql}``): the journal shared by replicas."""

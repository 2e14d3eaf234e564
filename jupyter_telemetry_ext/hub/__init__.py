"""JupyterHub: the collector service, forwarding from single-user servers, the hub's events."""

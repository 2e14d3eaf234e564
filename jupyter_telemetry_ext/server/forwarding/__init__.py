"""Forwarding: what a user's server accepts goes to the hub's collector through a durable spool."""

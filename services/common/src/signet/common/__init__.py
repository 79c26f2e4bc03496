"""Signet's shared plumbing: config, serving, errors, storage, events and HSM access."""

"""Signet's shared plumbing: the one place for config, serving, errors, storage, events and HSM access."""

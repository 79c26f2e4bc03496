"""Test fakes and helpers shared by every service's tests (never used in production paths)."""

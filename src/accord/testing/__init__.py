"""Test support shipped with accord: fakes and the contract suites every backend must pass."""

"""Fault and load scenarios (issue 13): a package, so that its conftest is not ``conftest``."""

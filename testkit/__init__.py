"""Helpers shared by the tests and the load tests: ports, tools, managed servers, tiny models."""

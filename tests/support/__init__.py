"""Test helpers shared by every tier: free ports, tool requirements, managed subprocesses."""

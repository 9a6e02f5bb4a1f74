"""Tests on the real node of ``make cluster-up`` (kubelet + containerd on this machine)."""

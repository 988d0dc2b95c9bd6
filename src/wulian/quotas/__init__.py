"""Rate limits and quotas per organisation, device and API caller (issue 11)."""

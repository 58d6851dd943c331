"""Fleet rollout: deployments' guards (guard.py) and the server's sweep (sweep.py)."""

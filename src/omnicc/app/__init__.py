"""Use cases: receive, identify, route, deliver, wrap up, report."""

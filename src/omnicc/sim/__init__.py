"""Discrete-event simulation that drives the real routing engine on a virtual clock."""

"""Batched episodes over a backend and a task, and their Gymnasium front ends."""

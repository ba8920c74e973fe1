"""Evaluations that measure what a user meets: ``museumtok eval chat`` (the guide)."""

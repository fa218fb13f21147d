"""People's-mediation exports and REST cases: pure translate."""

"""Grid-app JSON reports: pure translate."""

"""Grid-app JSON reports: pure translate."""
from connectors.sources.grid.translate import translate

__all__ = ["translate"]

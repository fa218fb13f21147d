"""Grid-app JSON reports: pure translate."""
from connectors.grid.translate import translate

__all__ = ["translate"]

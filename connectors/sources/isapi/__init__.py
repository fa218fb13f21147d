"""Hikvision ISAPI EventNotificationAlert pushes: pure translate."""
from connectors.sources.isapi.translate import translate

__all__ = ["translate"]

"""Hikvision ISAPI EventNotificationAlert pushes: pure translate."""
from connectors.isapi.translate import translate

__all__ = ["translate"]

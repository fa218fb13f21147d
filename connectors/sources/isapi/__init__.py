"""Hikvision ISAPI EventNotificationAlert pushes: pure translate."""

"""Smart-community door access (ISAPI AccessControllerEvent, GA/T 1400 records): pure translate."""
from connectors.sources.door.translate import translate

__all__ = ["translate"]

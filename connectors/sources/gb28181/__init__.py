"""GB/T 28181 camera alarms: pure translate (MANSCDP+xml Notify) and pure SIP helpers (sip.py)."""
from connectors.sources.gb28181.translate import translate

__all__ = ["translate"]

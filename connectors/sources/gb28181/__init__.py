"""GB/T 28181 camera alarms: pure translate (MANSCDP+xml Notify) and pure SIP helpers (sip.py)."""

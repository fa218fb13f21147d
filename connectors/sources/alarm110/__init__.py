"""110 alarm-desk JJD rows: pure translate."""

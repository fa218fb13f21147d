"""Smart-community door access (ISAPI AccessControllerEvent, GA/T 1400 records): pure translate."""

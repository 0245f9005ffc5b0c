"""Contract tests: the drivers against recording stand-ins of their APIs on 127.0.0.1."""

"""Real servers on loopback for the tests and the benchmarks: MariaDB sets (mariadb.py) and an
IMDSv2 stand-in (imds.py). Tests import these; nothing here imports the tests."""

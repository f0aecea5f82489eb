"""Everything the tests share, in one package: the real programs they start (the daemon,
the vendor emulators, rsyslog, moto, PostgreSQL), free loopback ports, waiting for a
condition, and the configurations the suites build. Conftests hold fixtures only and import
from here; no test module imports another test module or a conftest."""

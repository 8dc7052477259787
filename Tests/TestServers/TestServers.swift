// Real PostgreSQL and Redis servers for the tests (filled in by the test-servers change).

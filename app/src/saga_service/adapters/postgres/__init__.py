"""PostgreSQL, split the CQRS way: commands.py holds the SQL of the write side (run inside
the transactions of service/), queries.py the reads behind the GET endpoints and the gauges.
Both run on a connection their caller owns (db.py)."""

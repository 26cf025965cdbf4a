"""Query services: the only place that builds Piccolo queries. No Litestar imports here."""

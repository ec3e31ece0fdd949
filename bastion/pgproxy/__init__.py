"""The PostgreSQL door: client TLS and TOTP login, upstream SCRAM, relay, query log, cancel."""

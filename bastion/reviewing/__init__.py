"""Reviewers' reads shared by the CLI and the web console: one implementation of each.

Session search and a session's command index (sessions.py), a recording opened for viewing,
audited before its first byte (recordings.py), the query log and the consent ledger
(logs.py), the browser's recording player (player.py). Each call takes a `Viewer`
(bastion/access/viewing.py) and returns what a JSON API can send as it is. The calls are
synchronous and read the store: the event loop runs them through `Core.run`.
"""

"""What the console's people can do: use cases taking Core and the proven user, outside the door.

The web door (bastion/web) only parses a request, checks the role, calls one of these and
renders the answer. Each call here is blocking (the store, argon2-free TOTP checks): the
door runs it with Core.run, in the store's thread, so nothing on the event loop touches
SQLite. Authorisation stays in bastion/access and SQL in bastion/audit; these only compose
them for one person's request, as the CLI's commands do."""

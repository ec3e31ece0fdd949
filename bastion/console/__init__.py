"""What the console's people can do: use cases taking Core and the proven user, outside the door.

The web door (bastion/web) only parses a request, checks the role, calls one of these and
renders the answer. Every call here blocks (it reads or writes the store): the door runs it
with Core.run, in the store's thread, so nothing on the event loop touches SQLite. Who may
do what stays in bastion/access and all SQL in bastion/audit; these only put them together
for one person's request, as the CLI's commands do. tests/test_doors_use_the_core.py fails
if a door module reads the store itself."""

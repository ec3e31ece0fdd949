"""May a session on this target run a command that opens a raw network tunnel? (pure)

The SSH door refuses port forwarding outright; a raw tunnel run on the target (nc, socat,
``ssh -W``, a bash ``/dev/tcp`` redirection) does the same thing one hop further: it turns
the target into a jump host to machines the engineer holds no grant for, and what flows
through it (TLS, SSH) is opaque in the recording. So a target refuses them unless its
``raw_tunnels = "allow"``. The door finds them with bastion.ssh.streams.raw_tunnel.
"""

from __future__ import annotations

from bastion.config import TargetPolicy


def tunnel_refusal(policy: TargetPolicy, tunnel: str | None) -> str | None:
    """The one line that refuses the command, or None when it may run."""
    if tunnel is None or policy.raw_tunnels == "allow":
        return None
    return (
        f"raw network tunnels are refused on {policy.name} ({tunnel});"
        " ask an admin to grant access to the host you want to reach"
    )

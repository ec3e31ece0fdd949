"""Access decisions: the one place that answers "may this user reach this target now?"."""

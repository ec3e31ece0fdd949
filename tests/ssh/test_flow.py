"""A relay's reads pause while any reason holds and resume only when none does; output read
in one turn is sent as one, each stream in its turn."""

from __future__ import annotations

from bastion.ssh.flow import Batch, Valve


class Channel:
    """Stands in for the asyncssh channel's two reading calls; records what it was told."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def pause_reading(self) -> None:
        self.calls.append("pause")

    def resume_reading(self) -> None:
        self.calls.append("resume")


def test_a_resume_for_one_reason_does_not_undo_a_pause_for_another() -> None:
    channel, valve = Channel(), Valve()
    valve.attach(channel)
    valve.hold("recording")  # the recording's disk is behind
    valve.hold("client")  # and the engineer's client is full
    valve.release("client")  # the client caught up: still paused for the recording
    assert channel.calls == ["pause"]
    assert valve.reasons == {"recording"}
    valve.release("recording")
    assert channel.calls == ["pause", "resume"]


def test_releasing_a_reason_not_held_changes_nothing() -> None:
    channel, valve = Channel(), Valve()
    valve.attach(channel)
    valve.release("recording")
    valve.hold("client")
    valve.hold("client")
    valve.release("recording")
    assert channel.calls == ["pause"]


def test_a_reason_held_before_the_channel_exists_pauses_it_when_attached() -> None:
    valve, channel = Valve(), Channel()
    valve.hold("recording")
    valve.attach(channel)
    assert channel.calls == ["pause"]
    valve.release("recording")
    assert channel.calls == ["pause", "resume"]


def test_a_batch_joins_one_stream_and_hands_back_the_other_in_order() -> None:
    batch, sent = Batch(), list[tuple[bytes, int | None] | None]()
    for data, datatype in [(b"o1", None), (b"o2", None), (b"e1", 1), (b"o3", None)]:
        earlier = batch.add(data, datatype)
        if earlier is not None:
            sent.append(earlier)
    sent.append(batch.take())
    assert sent == [(b"o1o2", None), (b"e1", 1), (b"o3", None)]
    assert not batch and batch.take() is None

"""Replay: output events with their timing, scaled by speed, idle gaps capped, no real waits."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from bastion.identity.sealing import SecretBox
from bastion.recording import Event, Recording, read_recording, replay
from tests.recording.helpers import make_writer

EVENTS = [
    Event(0.5, "o", "$ "),
    Event(1.0, "i", "l"),
    Event(1.0, "o", "l"),
    Event(1.5, "r", "100x30"),
    Event(10.0, "o", "s\r\n"),
    Event(10.25, "o", "caf\u00e9\r\n"),
]
RECORDING = Recording("s-1", {"version": 2, "width": 80, "height": 24}, EVENTS, False, True)


def _sleeps(speed: float = 1.0, idle_limit: float | None = 2.0) -> tuple[list[float], str]:
    sleeps: list[float] = []
    out = io.StringIO()
    replay(RECORDING, out, speed=speed, idle_limit=idle_limit, sleep=sleeps.append)
    return sleeps, out.getvalue()


def test_output_is_written_with_its_gaps_and_idle_capped_at_2s() -> None:
    sleeps, text = _sleeps()
    assert sleeps == [0.5, 0.5, 2.0, 0.25]
    assert text == "$ ls\r\ncaf\u00e9\r\n"  # input and resize events are not shown


def test_speed_divides_every_gap() -> None:
    assert _sleeps(speed=2.0)[0] == [0.25, 0.25, 1.0, 0.125]
    assert _sleeps(speed=0.5)[0] == [1.0, 1.0, 4.0, 0.5]


def test_idle_limit_caps_gaps_before_speed() -> None:
    assert _sleeps(idle_limit=None)[0] == [0.5, 0.5, 9.0, 0.25]
    assert _sleeps(idle_limit=0.3)[0] == [0.3, 0.3, 0.3, 0.25]
    assert _sleeps(idle_limit=0.3, speed=3.0)[0] == pytest.approx([0.1, 0.1, 0.1, 0.25 / 3])


def test_binary_streams_get_utf8() -> None:
    out = io.BytesIO()
    replay(RECORDING, out, sleep=lambda _s: None)
    assert out.getvalue() == "$ ls\r\ncaf\u00e9\r\n".encode()


@pytest.mark.parametrize(
    ("speed", "idle_limit"), [(0.0, 2.0), (-1.0, 2.0), (float("nan"), 2.0), (1.0, 0.0)]
)
def test_bad_speed_or_idle_limit_is_refused(speed: float, idle_limit: float) -> None:
    with pytest.raises(ValueError, match="above 0"):
        replay(RECORDING, io.StringIO(), speed=speed, idle_limit=idle_limit)


def test_replay_of_a_recording_read_from_disk(tmp_path: Path, box: SecretBox) -> None:
    writer = make_writer(tmp_path, box)
    writer.output(b"hello ", 0.2)
    writer.output(b"world\r\n", 3.7)
    recording = read_recording(writer.close().path, box)
    sleeps: list[float] = []
    out = io.StringIO()
    replay(recording, out, speed=2.0, sleep=sleeps.append)
    assert out.getvalue() == "hello world\r\n"
    assert sleeps == [0.1, 1.0]


def test_playing_from_a_moment_shows_the_screen_then_at_once_and_times_the_rest() -> None:
    sleeps: list[float] = []
    out = io.StringIO()
    replay(RECORDING, out, sleep=sleeps.append, start=9.0)
    assert out.getvalue() == "$ ls\r\ncaf\u00e9\r\n"
    assert sleeps == [1.0, 0.25]  # nothing waited before 9 s; 9 -> 10 -> 10.25 in time


@pytest.mark.parametrize("start", [-1.0, float("nan"), float("inf")])
def test_a_bad_start_is_refused(start: float) -> None:
    with pytest.raises(ValueError, match="start must be"):
        replay(RECORDING, io.StringIO(), start=start)

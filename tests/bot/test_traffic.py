"""A lull is one of the whole server: `steward serve`'s workers share their requests in flight (bot/traffic.py)."""

from __future__ import annotations

import math
import multiprocessing

import pytest

from bot.traffic import RequestTraffic, Traffic, TrafficBoard


def test_a_request_in_flight_in_one_process_keeps_every_process_from_a_lull():
    board = TrafficBoard(2)
    first, second = RequestTraffic(quiet=0), RequestTraffic(quiet=0)
    first.share(board, board.take_slot())
    second.share(board, board.take_slot())
    assert second.wait_for_quiet(0)
    with first.request():
        assert board.read().in_flight == 1
        assert not second.wait_for_quiet(0.02)  # the other worker is still acking
    assert second.wait_for_quiet(0)


def test_the_quiet_spell_counts_from_the_last_answer_in_any_process():
    board = TrafficBoard(2)
    first, second = RequestTraffic(quiet=60), RequestTraffic(quiet=60)
    first.share(board, board.take_slot())
    second.share(board, board.take_slot())
    assert second.wait_for_quiet(0)  # nothing has happened yet
    with first.request():
        pass
    assert not second.wait_for_quiet(0.01)  # the other answered just now


def test_a_claimed_lull_is_used_up_for_every_process():
    board = TrafficBoard(2)
    first, second = RequestTraffic(quiet=60), RequestTraffic(quiet=60)
    first.share(board, board.take_slot())
    second.share(board, board.take_slot())
    assert first.wait_for_quiet(0, claim=True)
    assert not second.wait_for_quiet(0)  # one piece of work per lull, server-wide


def test_a_claimed_lull_leaves_the_server_idle_and_a_request_ends_the_idle_spell_everywhere():
    board = TrafficBoard(2)
    first, second = RequestTraffic(quiet=60, idle=60), RequestTraffic(quiet=60, idle=60)
    first.share(board, board.take_slot())
    second.share(board, board.take_slot())
    assert first.wait_for_quiet(0, claim=True)
    assert second.is_idle()  # the lane's own claims are not Slack traffic
    with first.request():
        assert not second.is_idle()
    assert not second.is_idle()  # answered just now: a burst may be going on


def test_idle_is_never_a_shorter_spell_than_quiet():
    traffic = RequestTraffic(quiet=60, idle=0)
    with traffic.request():
        pass
    assert not traffic.is_idle()


def test_an_exited_process_frees_its_slot_and_what_it_had_in_flight():
    board = TrafficBoard(1)
    slot = board.take_slot()
    board.write(slot, 3, 10.0, 9.0)  # killed with three requests unanswered
    with pytest.raises(RuntimeError):
        board.take_slot()
    board.free_slot(slot)
    assert board.read() == Traffic(0, 10.0, 9.0)
    assert board.take_slot() == slot


def test_an_empty_board_has_never_been_busy():
    assert TrafficBoard(3).read() == Traffic(0, -math.inf, -math.inf)


def _busy_child(board: TrafficBoard, slot: int, started, finish) -> None:
    traffic = RequestTraffic(quiet=0)
    traffic.share(board, slot)
    with traffic.request():
        started.set()
        finish.wait(10)


def test_the_board_is_shared_with_forked_processes():
    context = multiprocessing.get_context("fork")  # as gunicorn starts its workers
    board, started, finish = TrafficBoard(2), context.Event(), context.Event()
    mine = RequestTraffic(quiet=0)
    mine.share(board, board.take_slot())
    child = context.Process(target=_busy_child, args=(board, board.take_slot(), started, finish))
    child.start()
    try:
        assert started.wait(10)
        assert not mine.wait_for_quiet(0.02)  # the child's request, seen from here
    finally:
        finish.set()
        child.join(10)
    assert child.exitcode == 0
    assert mine.wait_for_quiet(1)

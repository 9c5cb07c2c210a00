"""A lull is one of the whole server: `steward serve`'s workers share their requests in flight (bot/traffic.py)."""

from __future__ import annotations

import math
import multiprocessing

import pytest

from bot.traffic import RequestTraffic, TrafficBoard


def test_a_request_in_flight_in_one_process_keeps_every_process_from_a_lull():
    board = TrafficBoard(2)
    first, second = RequestTraffic(quiet=0), RequestTraffic(quiet=0)
    first.share(board, board.take_slot())
    second.share(board, board.take_slot())
    assert second.wait_for_quiet(0)
    with first.request():
        assert board.read()[0] == 1
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


def test_an_exited_process_frees_its_slot_and_what_it_had_in_flight():
    board = TrafficBoard(1)
    slot = board.take_slot()
    board.write(slot, 3, 10.0)  # killed with three requests unanswered
    with pytest.raises(RuntimeError):
        board.take_slot()
    board.free_slot(slot)
    assert board.read() == (0, 10.0)
    assert board.take_slot() == slot


def test_an_empty_board_has_never_been_busy():
    assert TrafficBoard(3).read() == (0, -math.inf)


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

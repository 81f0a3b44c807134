"""A call's 401 marks a provider misconfigured, 403 a target, 404 a target missing; until
fixed. Probes lift marks, never set them."""

from __future__ import annotations

import logging

import anyio
import pytest

from mcp_router.errors import ProviderStatusError, ProviderUnavailable
from mcp_router.health import HealthBook
from mcp_router.messages import Attempt
from mcp_router.probes import Prober
from mcp_router.routing.circuits import BreakerBoard
from tests.fixtures.scripted import ScriptedAdapter, completion, request, status_error
from tests.health.support import CLOCK, guarded
from tests.health.test_breaker import fail_times, open_circuit
from tests.routing.support import call_for

pytestmark = [pytest.mark.virtual_time, pytest.mark.anyio]
UNTIL_FIXED = "skipped until the config changes or a probe succeeds"
UNTIL_LISTED = "skipped until the config changes or a probe finds the model listed"


def prober(board: BreakerBoard, *adapters: ScriptedAdapter) -> Prober:
    return Prober({a.provider: a for a in adapters}, board, HealthBook(CLOCK, board), CLOCK)


async def test_a_key_refused_with_401_marks_every_target_of_the_provider() -> None:
    adapter = ScriptedAdapter("a", [status_error("a", 401), completion()])
    board = BreakerBoard(CLOCK)
    refused, other = guarded(adapter, board, model="m1"), guarded(adapter, board, model="m2")
    with pytest.raises(ProviderStatusError):
        await refused.complete(request(), call_for(60))

    call = call_for(60)
    with pytest.raises(ProviderUnavailable):
        await other.complete(request(), call)  # the same key would be refused for m2 too

    assert call.attempts[0].error == f"misconfigured (HTTP 401: Unauthorized); {UNTIL_FIXED}"
    assert len(adapter.calls) == 1
    assert [board.circuit(k).state for k in ("a/m1", "a/m2")] == ["misconfigured"] * 2


@pytest.mark.parametrize(("status", "phrase"), [(403, "Forbidden")])
async def test_a_refused_call_marks_its_target_misconfigured_for_good_and_only_that_target(
        status: int, phrase: str) -> None:
    adapter = ScriptedAdapter("a", [status_error("a", status), completion()])
    board = BreakerBoard(CLOCK)
    refused, other = guarded(adapter, board, model="m1"), guarded(adapter, board, model="m2")
    with pytest.raises(ProviderStatusError):
        await refused.complete(request(), call_for(60))

    await anyio.sleep(24 * 3600)
    call = call_for(60)
    with pytest.raises(ProviderUnavailable):
        await refused.complete(request(), call)
    await other.complete(request(), call_for(60))

    reason = f"misconfigured (HTTP {status}: {phrase}); {UNTIL_LISTED}"
    assert call.attempts == [Attempt(provider="a", model="m1", outcome="skipped", error=reason)]
    assert len(adapter.calls) == 2
    assert [board.circuit(k).state for k in ("a/m1", "a/m2")] == ["misconfigured", "closed"]
    assert board.circuit("a/m1").open_until is None


async def test_an_unknown_model_marks_only_that_target_missing() -> None:
    adapter = ScriptedAdapter("a", [status_error("a", 404), completion()])
    board = BreakerBoard(CLOCK)
    gone, fine = guarded(adapter, board, model="grok-beta"), guarded(adapter, board)
    with pytest.raises(ProviderStatusError):
        await gone.complete(request(), call_for(60))

    call = call_for(60)
    with pytest.raises(ProviderUnavailable):
        await gone.complete(request(), call)
    await fine.complete(request(), call_for(60))

    assert call.attempts[0].error == f"model missing (HTTP 404: Not Found); {UNTIL_LISTED}"
    assert (board.circuit("a/grok-beta").state, board.circuit("a/m").state) == (
        "missing", "closed")


async def test_a_reset_after_a_config_change_lifts_the_marks() -> None:
    adapter = ScriptedAdapter("a", [status_error("a", 401), status_error("a", 404), completion()])
    board = BreakerBoard(CLOCK)
    leaf = guarded(adapter, board)
    for _ in range(2):
        with pytest.raises(ProviderStatusError):
            await leaf.complete(request(), call_for(60))
        board.reset("a")

    await leaf.complete(request(), call_for(60))

    assert len(adapter.calls) == 3 and board.circuit("a/m").state == "closed"


async def test_a_probe_that_lists_the_models_lifts_both_marks_without_a_completion() -> None:
    adapter = ScriptedAdapter("a", [status_error("a", 404), status_error("a", 403), completion()],
                              listed=["m1", "m2", "m3"])
    board = BreakerBoard(CLOCK)
    gone, other = guarded(adapter, board, model="m1"), guarded(adapter, board, model="m2")
    for leaf in (gone, other):
        with pytest.raises(ProviderStatusError):
            await leaf.complete(request(), call_for(60))
    assert [board.circuit(k).state for k in ("a/m1", "a/m2")] == ["missing", "misconfigured"]

    result = await prober(board, adapter).probe("a")

    assert result.ok and len(adapter.probes) == 1 and len(adapter.calls) == 2
    assert [board.circuit(k).state for k in ("a/m1", "a/m2")] == ["closed", "closed"]
    await gone.complete(request(), call_for(60))


async def test_a_probe_lifts_no_mark_of_a_model_its_list_does_not_name() -> None:
    adapter = ScriptedAdapter("a", [status_error("a", 404), status_error("a", 401), completion()],
                              listed=["m2"])
    board = BreakerBoard(CLOCK)
    gone, keyless = guarded(adapter, board, model="m1"), guarded(adapter, board, model="m2")
    with pytest.raises(ProviderStatusError):
        await gone.complete(request(), call_for(60))  # 404: m1 is missing
    with pytest.raises(ProviderStatusError):
        await keyless.complete(request(), call_for(60))  # 401: the whole provider is marked
    assert [board.circuit(k).state for k in ("a/m1", "a/m2")] == ["misconfigured"] * 2

    result = await prober(board, adapter).probe("a")

    # The key works again (the list came back); m1 is still not there, so it stays skipped.
    assert (result.ok, result.models_listed, result.unlisted) == (True, 1, ["m1"])
    assert [board.circuit(k).state for k in ("a/m1", "a/m2")] == ["missing", "closed"]
    call = call_for(60)
    with pytest.raises(ProviderUnavailable):
        await gone.complete(request(), call)
    assert call.attempts[0].error == f"model missing (HTTP 404: Not Found); {UNTIL_LISTED}"
    await keyless.complete(request(), call_for(60))
    assert [model for _, model in adapter.calls] == ["m1", "m2", "m2"]


async def test_a_probe_without_a_model_list_vouches_for_the_key_but_not_the_models() -> None:
    adapter = ScriptedAdapter("a", [status_error("a", 404), status_error("a", 401)])
    board = BreakerBoard(CLOCK)
    gone, other = guarded(adapter, board, model="m1"), guarded(adapter, board, model="m2")
    for leaf in (gone, other):
        with pytest.raises(ProviderStatusError):
            await leaf.complete(request(), call_for(60))

    result = await prober(board, adapter).probe("a")  # answered, but with no list it knows

    assert (result.ok, result.models_listed, result.unlisted) == (True, None, [])
    assert [board.circuit(k).state for k in ("a/m1", "a/m2")] == ["missing", "closed"]


async def test_an_account_problem_sent_as_400_is_not_lifted_by_a_probe_that_costs_nothing(
) -> None:
    no_credit = ProviderStatusError("a", "m", 401, "sent as HTTP 400 (credit balance too low): "
                                                   "Your credit balance is too low")
    adapter = ScriptedAdapter("a", [no_credit, completion()], listed=["m"])
    board = BreakerBoard(CLOCK)
    leaf = guarded(adapter, board)
    with pytest.raises(ProviderStatusError):
        await leaf.complete(request(), call_for(60))

    result = await prober(board, adapter).probe("a")  # listing models needs no credit

    call = call_for(60)
    with pytest.raises(ProviderUnavailable):
        await leaf.complete(request(), call)
    assert result.ok and len(adapter.calls) == 1
    assert call.attempts[0].error == (
        "misconfigured (HTTP 401: sent as HTTP 400 (credit balance too low)); skipped until the "
        "config changes or the server restarts (a probe cannot tell)")
    board.reset("a")  # a config change
    await leaf.complete(request(), call_for(60))


@pytest.mark.parametrize("status", [401, 403])
async def test_a_probe_refused_marks_nothing_and_is_told_once_calls_decide(
        status: int, caplog: pytest.LogCaptureFixture) -> None:
    """A key may complete but not list models (an OpenAI restricted key without the
    api.model.read scope): a refused probe, on demand or on an interval, is reported only."""
    caplog.set_level(logging.INFO, logger="mcp_router")
    adapter = ScriptedAdapter("a", [completion()], probe_script=[status_error("a", status)])
    board = BreakerBoard(CLOCK)
    leaves = [guarded(adapter, board, model=m) for m in ("m1", "m2")]
    probing = prober(board, adapter)

    results = [await probing.probe("a") for _ in range(2)]
    for leaf in leaves:
        await leaf.complete(request(), call_for(60))

    assert [(r.ok, r.status) for r in results] == [(False, status)] * 2
    assert len(adapter.calls) == 2
    assert [board.circuit(k).state for k in ("a/m1", "a/m2")] == ["closed"] * 2
    said = [r.getMessage() for r in caplog.records if r.name == "mcp_router"]
    assert said == [f"provider a: a probe was refused (HTTP {status}); nothing is marked, "
                    "since a key may be allowed to complete but not to list models: calls "
                    "decide"]


async def test_a_successful_probe_leaves_an_open_circuit_open_until_its_reopen_time() -> None:
    board = BreakerBoard(CLOCK)
    await open_circuit(board)  # 30 s from now
    adapter = ScriptedAdapter("a", [status_error("a", 503)], listed=["m"])
    leaf = guarded(adapter, board, attempts=3)

    await anyio.sleep(10)
    assert (await prober(board, adapter).probe("a")).ok
    call = call_for(60)
    with pytest.raises(ProviderUnavailable):
        await leaf.complete(request(), call)

    circuit = board.circuit("a/m")
    assert (circuit.state, circuit.reopens_at, len(adapter.calls)) == ("open", 30, 0)
    assert call.attempts[0].outcome == "skipped"
    await anyio.sleep(20)  # the cooldown runs its course; then one trial decides, as ever
    with pytest.raises(ProviderStatusError):
        await leaf.complete(request(), call_for(60))
    assert len(adapter.calls) == 1
    assert board.circuit("a/m").reopens_at == anyio.current_time() + 60  # doubled


async def test_probes_on_an_interval_let_the_cooldown_double() -> None:
    board = BreakerBoard(CLOCK)
    await open_circuit(board)
    adapter = ScriptedAdapter("a", [status_error("a", 503)], listed=["m"])
    leaf = guarded(adapter, board)

    async with anyio.create_task_group() as group:
        group.start_soon(prober(board, adapter).run_every, 1)
        for _ in range(29):
            await anyio.sleep(1)
            with pytest.raises(ProviderUnavailable):
                await leaf.complete(request(), call_for(60))
        await anyio.sleep(1)
        await fail_times(leaf, 1)  # the trial, after the full 30 s
        await anyio.sleep(59)
        with pytest.raises(ProviderUnavailable):
            await leaf.complete(request(), call_for(60))
        group.cancel_scope.cancel()

    assert len(adapter.calls) == 1 and len(adapter.probes) >= 89


async def test_a_failed_probe_moves_no_circuit() -> None:
    board = BreakerBoard(CLOCK)
    await open_circuit(board)
    adapter = ScriptedAdapter("a", [completion()], probe_script=[status_error("a", 503)])

    result = await prober(board, adapter).probe("a")

    assert not result.ok
    assert board.circuit("a/m").state == "open"


async def test_a_mark_is_told_once_in_the_log_and_its_lifting_too(
        caplog: pytest.LogCaptureFixture) -> None:
    """Calls skip a marked provider without a word: the operator learns of the key here."""
    caplog.set_level(logging.INFO, logger="mcp_router")
    adapter = ScriptedAdapter("a", [status_error("a", 401), status_error("a", 401)])
    board = BreakerBoard(CLOCK)
    for model in ("m1", "m2"):
        with pytest.raises((ProviderStatusError, ProviderUnavailable)):
            await guarded(adapter, board, model=model).complete(request(), call_for(60))
    board.probe_succeeded("a", None)
    said = [r.getMessage() for r in caplog.records if r.name == "mcp_router"]
    assert said == [
        "provider a marked misconfigured (its key was refused) after HTTP 401: Unauthorized; "
        f"{UNTIL_FIXED} (provider_health {{probe: true}} tries it)",
        "provider a: a probe succeeded; its targets are asked again"]

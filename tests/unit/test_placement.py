"""Placement over slots: least loaded first, no instance over its slots even when dispatches
race, capacity from the run-job:slots tag, and a duplicate dispatch takes no second slot."""

from __future__ import annotations

import collections
from typing import Any

import pytest

from dispatch.jobs import Instance, placement_order
from local_stack import moto_fixes
from shared import slots

from .support import event_for, expected_job_id, job_request, run_together

WORD_COUNT = job_request("word-count.json")
DEFAULT_SLOTS = 2  # template.yaml: the DefaultSlots parameter's default
THREAD_TIMEOUT_SECONDS = 30


def set_slots(deployment: Any, instance_id: str, value: str) -> None:
    deployment.ec2.create_tags(Resources=[instance_id], Tags=[{"Key": "run-job:slots", "Value": value}])


def loads(holders: dict[str, set[str]], deployment: Any) -> dict[str, int]:
    return {instance_id: len(holders.get(instance_id, set())) for instance_id in deployment.instance_ids}


def test_jobs_fill_the_least_loaded_instance_first_until_every_slot_is_taken(
    deployment, invoke, refuse, slot_holders, commands, jobs
):
    for dispatched in range(1, DEFAULT_SLOTS * len(deployment.instance_ids) + 1):
        result = invoke(event_for(WORD_COUNT))
        holders = slot_holders()
        assert result["jobId"] in holders[result["instanceId"]]
        counts = loads(holders, deployment)
        assert sum(counts.values()) == dispatched
        assert max(counts.values()) - min(counts.values()) <= 1, counts  # spread, never piled up
    assert set(loads(slot_holders(), deployment).values()) == {DEFAULT_SLOTS}

    exc = refuse(event_for(WORD_COUNT))
    assert type(exc).__name__ == "Job.NoCapacity"
    assert "all 6 slots" in str(exc)
    assert len(commands()) == len(jobs()) == 6  # the refused job left nothing behind


def test_a_freed_slot_takes_the_next_job(deployment, invoke, refuse, slot_holders):
    results = [invoke(event_for(WORD_COUNT)) for _ in range(DEFAULT_SLOTS * len(deployment.instance_ids))]
    assert type(refuse(event_for(WORD_COUNT))).__name__ == "Job.NoCapacity"
    freed = results[4]
    assert slots.release(deployment.dynamodb, deployment.slot_table, freed["instanceId"], freed["jobId"])
    assert not slots.release(deployment.dynamodb, deployment.slot_table, freed["instanceId"], freed["jobId"])

    result = invoke(event_for(WORD_COUNT))
    assert result["instanceId"] == freed["instanceId"]
    assert set(loads(slot_holders(), deployment).values()) == {DEFAULT_SLOTS}


def test_the_slots_tag_sets_an_instances_capacity(deployment, invoke, refuse, slot_holders):
    drained, bigger, untagged = deployment.instance_ids
    set_slots(deployment, drained, "0")
    set_slots(deployment, bigger, "3")
    for _ in range(3 + DEFAULT_SLOTS):
        invoke(event_for(WORD_COUNT))
    assert loads(slot_holders(), deployment) == {drained: 0, bigger: 3, untagged: DEFAULT_SLOTS}
    assert type(refuse(event_for(WORD_COUNT))).__name__ == "Job.NoCapacity"


@pytest.mark.parametrize("value", ["two", "-1", "257", "1.5", " 3", ""])
def test_a_slots_tag_that_is_not_a_count_counts_as_the_default(value, deployment, invoke, slot_holders):
    for instance_id in deployment.instance_ids:
        set_slots(deployment, instance_id, value)
    for _ in range(DEFAULT_SLOTS * len(deployment.instance_ids)):
        invoke(event_for(WORD_COUNT))
    assert set(loads(slot_holders(), deployment).values()) == {DEFAULT_SLOTS}


def test_dispatches_racing_for_the_last_slot_take_it_once(deployment, invoke, slot_holders, commands, jobs):
    last = deployment.instance_ids[0]
    moto_fixes.lost_instances.update(set(deployment.instance_ids) - {last})
    set_slots(deployment, last, "1")
    events = [event_for(WORD_COUNT) for _ in range(8)]

    outcomes = run_together([lambda event=event: invoke(event) for event in events], THREAD_TIMEOUT_SECONDS)

    won = [outcome for outcome in outcomes if isinstance(outcome, dict)]
    lost = [outcome for outcome in outcomes if not isinstance(outcome, dict)]
    assert len(won) == 1, outcomes
    assert {type(exc).__name__ for exc in lost} == {"Job.NoCapacity"}
    assert slot_holders() == {last: {won[0]["jobId"]}}
    assert len(commands()) == len(jobs()) == 1


def test_concurrent_duplicates_hold_one_slot_and_send_one_command(deployment, invoke, slot_holders, commands, jobs):
    event = event_for(WORD_COUNT)

    outcomes = run_together([lambda: invoke(dict(event))] * 6, THREAD_TIMEOUT_SECONDS)

    assert all(isinstance(outcome, dict) for outcome in outcomes), outcomes
    job_id = expected_job_id(event)
    assert {outcome["jobId"] for outcome in outcomes} == {job_id}
    [command] = commands()
    assert len(jobs()) == 1
    # Losers that took a slot on another instance gave it back; one holder is left.
    held = {instance_id: ids for instance_id, ids in slot_holders().items() if ids}
    assert held == {command["InstanceIds"][0]: {job_id}}


def test_a_replayed_event_takes_no_slot(deployment, invoke, slot_holders):
    event = event_for(WORD_COUNT)
    first = invoke(event)
    slots.release(deployment.dynamodb, deployment.slot_table, first["instanceId"], first["jobId"])  # job done
    again = invoke(dict(event))
    assert again == first
    assert not any(slot_holders().values())


def test_placement_prefers_the_least_loaded_then_the_job_ids_hash():
    instances = [Instance(f"i-{n}", 2, frozenset()) for n in range(4)]
    busy = Instance("i-busy", 4, frozenset({"job-a", "job-b"}))
    full = Instance("i-full", 1, frozenset({"job-c"}))
    drained = Instance("i-drained", 0, frozenset())
    first_choices = collections.Counter(
        placement_order([*instances, busy, full, drained], f"job-{n:032x}")[0].instance_id for n in range(400)
    )
    assert set(first_choices) == {i.instance_id for i in instances}  # never the busier, full or drained
    assert min(first_choices.values()) > 60  # equally loaded: the hash spreads first choices evenly
    order = [i.instance_id for i in placement_order([*instances, busy, full, drained], "job-" + "0" * 32)]
    assert order[-1] == "i-busy"
    assert "i-full" not in order
    assert "i-drained" not in order
    assert order == [i.instance_id for i in placement_order([busy, *reversed(instances)], "job-" + "0" * 32)]


def test_an_instance_the_job_holds_a_slot_on_comes_first():
    """A retried dispatch (its slot taken, its record not yet written) reuses its own slot."""
    mine = Instance("i-mine", 1, frozenset({"job-x"}))
    empty = Instance("i-empty", 8, frozenset())
    assert [i.instance_id for i in placement_order([empty, mine], "job-x")] == ["i-mine", "i-empty"]

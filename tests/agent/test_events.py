"""Task events: exact types, display messages, bounded list."""

from __future__ import annotations

import pytest

from rawexec.agent import events as ev
from rawexec.agent.events import MAX_TASK_EVENTS, TaskEvent, TaskState, format_duration


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (15, "15s"), (1800, "30m0s"), (86400, "24h0m0s"), (1.5, "1.5s"), (0.25, "250ms"),
    (0.0000015, "1.5µs"), (3723.5, "1h2m3.5s"), (-2, "-2s"), (90, "1m30s"), (5e-9, "5ns"),
])
def test_format_duration_matches_go(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_display_messages() -> None:
    assert TaskEvent.received().display_message == "Task received by client"
    assert TaskEvent.started().display_message == "Task started by client"
    assert TaskEvent.task_setup("Building Task Directory").display_message == "Building Task Directory"
    assert TaskEvent.terminated(0).display_message == "Exit Code: 0"
    assert TaskEvent.terminated(137, 9).display_message == "Exit Code: 137, Signal: 9"
    assert TaskEvent.terminated(-1, err='executor "lost"').display_message == \
        'Exit Code: -1, Exit Message: "executor \\"lost\\""'
    assert TaskEvent.killing(5).display_message == "Sent interrupt. Waiting 5s before force killing"
    assert TaskEvent.killing(5, "alloc stopped").display_message == "alloc stopped"
    assert TaskEvent.killing(0).display_message == "Sent interrupt"
    assert TaskEvent.new(ev.CLIENT_RECONNECTED).display_message == "Client reconnected"
    assert TaskEvent.killed().display_message == "Task successfully killed"
    assert TaskEvent.killed("boom").display_message == "boom"
    assert TaskEvent.restarting(15.5, "Restart within policy").display_message == "Task restarting in 15.5s"
    assert TaskEvent.restarting(60, "Exceeded allowed attempts, applying a delay").display_message == \
        "Exceeded allowed attempts, applying a delay - Task restarting in 1m0s"
    assert TaskEvent.not_restarting("").display_message == "Task exceeded restart policy"
    assert TaskEvent.signaling("SIGHUP").display_message == "Task being sent signal SIGHUP"
    assert TaskEvent.signaling("SIGHUP", "user").display_message == "Task being sent signal SIGHUP: user"
    assert TaskEvent.signaling("").display_message == "Task being sent a signal"
    assert TaskEvent.driver_failure("").display_message == "Failed to start task"
    assert TaskEvent.downloading_artifacts().display_message == "Client is downloading artifacts"
    assert TaskEvent.sibling_failed("web").display_message == 'Task\'s sibling "web" failed'
    assert TaskEvent.new(ev.LEADER_DEAD).display_message == "Leader Task in Group dead"
    wait = TaskEvent.new(ev.WAITING_SHUTDOWN_DELAY, message="Waiting for 5s")
    assert wait.display_message == "Waiting for 5s"


def test_details_and_fails_task() -> None:
    t = TaskEvent.terminated(3, oom_killed=True)
    assert t.details == {"oom_killed": "true", "exit_code": "3", "signal": "0"}
    assert not t.fails_task
    k = TaskEvent.killing(5)
    assert k.details["kill_timeout"] == "5s"
    assert not TaskEvent.driver_failure("x").fails_task  # the restart verdict fails the task
    assert TaskEvent.driver_failure("x", fails_task=True).details["fails_task"] == "true"
    assert TaskEvent.failed_validation("failed to parse config: x").validation_error.startswith("failed")
    assert TaskEvent.not_restarting("Error was unrecoverable").fails_task


def test_details_of_every_constructor() -> None:
    """Nomad's Details keys, values and order for each kind of event (set once, at construction)."""
    cases = [
        (TaskEvent.terminated(137, 9, oom_killed=True, err="lost"),
         {"oom_killed": "true", "exit_code": "137", "signal": "9", "exit_message": "lost"}),
        (TaskEvent.killing(5, "why"), {"kill_reason": "why", "kill_timeout": "5s"}),
        (TaskEvent.killing(0), {"kill_timeout": "0s"}),
        (TaskEvent.killed("boom"), {"kill_error": "boom"}),
        (TaskEvent.restarting(1.5, "r"), {"restart_reason": "r", "start_delay": "1500000000"}),
        (TaskEvent.not_restarting("no"), {"fails_task": "true", "restart_reason": "no"}),
        (TaskEvent.signaling("SIGHUP", "user"), {"signal": "SIGHUP", "signal_reason": "user"}),
        (TaskEvent.driver_failure("d", fails_task=True), {"fails_task": "true", "driver_error": "d"}),
        (TaskEvent.failed_validation("v"), {"validation_error": "v"}),
        (TaskEvent.setup_failure("s"), {"fails_task": "true", "setup_error": "s"}),
        (TaskEvent.artifact_download_failed("a"), {"download_error": "a"}),
        (TaskEvent.sibling_failed("web"), {"failed_sibling": "web"}),
        (TaskEvent.new(ev.DRIVER_MESSAGE, driver_message="m", details={"k": "v"}),
         {"k": "v", "driver_message": "m"}),
        (TaskEvent.new(ev.TERMINATED, task_signal="SIGHUP"), {"exit_code": "0", "signal": "0"}),
        (TaskEvent.received(), {}), (TaskEvent.started(), {}), (TaskEvent.task_setup("x"), {}),
    ]
    for event, details in cases:
        assert list(event.details.items()) == list(details.items()), event.type
    with pytest.raises(TypeError):
        TaskEvent.new(ev.STARTED, no_such_field=1)


def test_record_json_encoded_once() -> None:
    import json

    e = TaskEvent.terminated(1, err="x", at=7)
    assert e.record_json() is e.record_json()
    assert json.loads(e.record_json()) == e.to_dict()
    assert TaskEvent.from_dict(json.loads(e.record_json())) == e


def test_unknown_type_refused() -> None:
    with pytest.raises(ValueError, match="unknown task event type 'Bogus'"):
        TaskEvent(type="Bogus")


def test_roundtrip_and_api_shape() -> None:
    e = TaskEvent.restarting(16.25, "Restart within policy", at=1_700_000_000_000_000_000)
    assert TaskEvent.from_dict(e.to_dict()) == e
    api = e.to_api()
    assert api["Type"] == "Restarting" and api["StartDelay"] == 16_250_000_000
    assert api["DisplayMessage"] == "Task restarting in 16.25s"
    assert api["Time"] == 1_700_000_000_000_000_000
    with pytest.raises(ValueError, match="unknown fields"):
        TaskEvent.from_dict({"type": "Started", "time": 1, "bogus": 1})


def test_task_state_keeps_last_ten_and_counts() -> None:
    st = TaskState()
    st.set_state("pending", TaskEvent.received(at=1))
    for i in range(2, 20):
        st.append_event(TaskEvent.restarting(1, "Restart within policy", at=i))
    assert len(st.events) == MAX_TASK_EVENTS
    assert [e.time for e in st.events] == list(range(10, 20))
    assert st.restarts == 18 and st.last_restart == 19
    assert not st.failed
    st.set_state("running", TaskEvent.started(at=100))
    assert st.started_at == 100
    st.set_state("dead", TaskEvent.not_restarting("Error was unrecoverable", at=200))
    assert st.failed and st.finished_at == 200 and not st.successful
    st.set_state("dead", TaskEvent.killed(at=300))
    assert st.finished_at == 200  # first death kept
    back = TaskState.from_dict(st.to_dict())
    assert back == st
    assert back.to_api()["FinishedAt"] == "1970-01-01T00:00:00.0000002Z"
    assert TaskState().to_api()["StartedAt"] == "0001-01-01T00:00:00Z"
    with pytest.raises(ValueError, match="invalid task state 'zombie'"):
        st.set_state("zombie")


def test_json_forms_match_the_dict_forms() -> None:
    """The JSON the agent writes and serves is built from pieces encoded once per event: it must
    decode to exactly what to_api()/to_dict() give, for every kind of event and after caching."""
    import json

    st = TaskState()
    st.append_event(TaskEvent.received(at=1))
    st.append_event(TaskEvent.task_setup("Building Task Directory", at=2))
    st.set_state(ev.TASK_RUNNING, TaskEvent.started(at=3))
    st.append_event(TaskEvent.terminated(137, 9, oom_killed=True, err='exit "quoted"\n', at=4))
    st.append_event(TaskEvent.restarting(15.5, "Restart within policy", at=5))
    st.append_event(TaskEvent.signaling("SIGHUP", "ünïcode reason", at=6))
    for _ in range(2):  # the second pass uses the cached pieces
        assert json.loads(st.api_json()) == st.to_api()
        assert json.loads(st.record_json()) == st.to_dict()
        assert TaskState.from_dict(json.loads(st.record_json())) == st
    e = st.events[-1]
    assert e.api_json() is e.api_json()  # encoded once
    assert json.loads(e.api_json()) == e.to_api() and json.loads(e.record_json()) == e.to_dict()

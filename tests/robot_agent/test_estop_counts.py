"""Issue 11: counts mean what they say. One e-stop is one event, however long the arm is held
after it; the held ticks after it are not safety interventions."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from robot_agent.metrics import AgentMetrics
from safety import EStop
from tests.robot_agent.test_control import chunk, feed, make_loop


async def test_one_estop_is_one_intervention_however_long_it_holds() -> None:
    registry = CollectorRegistry()  # a registry of its own, to read the counter back
    estop = EStop()  # the agent's one latch, shared by the shield and the loop
    loop, _robot, plan, stats = make_loop(metrics=AgentMetrics(registry), estop=estop)
    feed(plan, chunk(0.001), capture=0.0, now=0.0)
    await loop.tick(0.01, 0.01)
    assert not loop.estopped
    before = dict(stats.safety_interventions)  # what the first, moving tick trimmed
    estop.trigger("operator")
    for k in range(2, 52):  # 50 ticks held on the latch
        await loop.tick(0.01 * k, 0.01)
    assert loop.estopped and loop.holding
    assert stats.estops == 1 and stats.estop_reason == "operator"
    assert dict(stats.safety_interventions) == {**before, "estop": 1}
    assert registry.get_sample_value("vla_agent_safety_interventions_total", {"kind": "estop"}) == 1

"""The simulated task's scene and judge: placement, instruction, success and failure rules."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from robot_agent.sim import COLOURS, Cube, ManualClock, SimWorld
from robot_agent.sim.world import INSTRUCTION_TEMPLATES


def scene(world: SimWorld, target: str = "red") -> None:
    world.set_scene(
        [
            Cube("red", (0.45, -0.15, 0.0225)),
            Cube("green", (0.45, 0.0, 0.0225)),
            Cube("blue", (0.60, 0.15, 0.0225), yaw=0.5),
        ],
        target,
    )


@pytest.mark.parametrize("seed", range(20))
def test_reset_places_three_separated_cubes_in_the_workspace(seed: int) -> None:
    world = SimWorld(clock=ManualClock())
    instruction = world.reset(seed)
    assert sorted(c.colour for c in world.cubes) == sorted(COLOURS)
    for c in world.cubes:
        assert 0.35 <= c.position[0] <= 0.65 and -0.25 <= c.position[1] <= 0.25
        assert c.position[2] == pytest.approx(c.size / 2)  # resting on the table
    for a, b in itertools.combinations(world.cubes, 2):
        assert np.hypot(a.position[0] - b.position[0], a.position[1] - b.position[1]) >= world.min_separation
    assert world.target in COLOURS
    assert instruction == world.instruction
    assert world.target in instruction.split()
    assert any(instruction == t.format(colour=world.target) for t in INSTRUCTION_TEMPLATES)


def test_reset_with_a_seed_is_reproducible_and_seeds_differ() -> None:
    a, b = SimWorld(clock=ManualClock()), SimWorld(clock=ManualClock())
    assert a.reset(7) == b.reset(7) and a.cubes == b.cubes
    scenes = {
        SimWorld(clock=ManualClock()).reset(s) + str(SimWorld(clock=ManualClock(), seed=s).cubes)
        for s in range(5)
    }
    assert len(scenes) == 5
    targets = {SimWorld(clock=ManualClock(), seed=s).target for s in range(30)}
    assert targets == set(COLOURS)


def test_reaching_the_named_cube_top_is_success_with_the_cube_named() -> None:
    clock = ManualClock()
    world = SimWorld(clock=clock)
    scene(world, "green")
    world.observe_tip(np.array([0.45, 0.0, 0.30]), clock.advance(1.0))
    assert world.evaluate().status == "running"
    # 1.5 cm off horizontally, 2.5 cm above the top: inside the 2 cm / 3 cm tolerance.
    world.observe_tip(np.array([0.465, 0.0, 0.045 + 0.025]), clock.advance(1.0))
    result = world.evaluate()
    assert result.status == "success" and result.success and result.done
    assert result.reached == "green" == result.target
    assert result.time_to_success_s == pytest.approx(2.0)
    # Latched: moving away afterwards changes nothing.
    world.observe_tip(np.array([0.45, 0.0, 0.30]), clock.advance(1.0))
    assert world.evaluate() == result


@pytest.mark.parametrize(
    ("tip", "status"),
    [
        ((0.45, 0.0, 0.045 + 0.035), "running"),  # 3.5 cm above: too high
        ((0.45, 0.025, 0.06), "running"),  # 2.5 cm aside: too far
        ((0.45, 0.0, 0.045 + 0.029), "success"),
        ((0.45 + 0.0141, 0.0141, 0.045), "success"),  # 2 cm diagonally
    ],
)
def test_success_tolerances(tip: tuple[float, float, float], status: str) -> None:
    clock = ManualClock()
    world = SimWorld(clock=clock)
    scene(world, "green")
    world.observe_tip(np.array(tip), clock.advance(0.1))
    assert world.evaluate().status == status


def test_touching_another_cube_first_is_failure_naming_it() -> None:
    clock = ManualClock()
    world = SimWorld(clock=clock)
    scene(world, "green")
    world.observe_tip(np.array([0.45, -0.15, 0.04]), clock.advance(0.5))  # into the red cube
    result = world.evaluate()
    assert result.status == "failure" and result.reached == "red"
    assert "red" in result.reason
    world.observe_tip(np.array([0.45, 0.0, 0.05]), clock.advance(0.5))  # then the green one: too late
    assert world.evaluate() == result


def test_touching_uses_the_cube_yaw() -> None:
    clock = ManualClock()
    world = SimWorld(clock=clock)
    scene(world, "red")
    blue = world.cube("blue")
    # A corner direction of the axis-aligned box that the yawed (0.5 rad) cube does not cover.
    world.observe_tip(np.asarray(blue.position) + np.array([0.024, 0.024, 0.0]), clock.advance(0.1))
    assert world.evaluate().status == "running"
    assert blue.contains(np.asarray(blue.position) + np.array([0.0, 0.025, 0.0]))


def test_timeout_and_table_are_failures() -> None:
    clock = ManualClock()
    world = SimWorld(clock=clock, time_limit_s=15.0)
    scene(world)
    clock.advance(14.9)
    assert world.evaluate().status == "running"
    clock.advance(0.2)
    result = world.evaluate()
    assert result.status == "failure" and "timeout" in result.reason and result.reached is None

    scene(world)
    world.observe_tip(np.array([0.3, 0.2, -0.02]), clock.advance(0.1))
    assert "table" in world.evaluate().reason


def test_set_scene_refuses_a_target_not_in_the_scene() -> None:
    world = SimWorld(clock=ManualClock())
    with pytest.raises(ValueError, match="'purple'"):
        world.set_scene([Cube("red", (0.5, 0, 0.0225))], "purple")

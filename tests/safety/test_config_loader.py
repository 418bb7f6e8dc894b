"""The shared config loader: TOML tables -> nested frozen dataclass sections, with messages that
name the key path (and the file), whichever package's error class it raises."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from safety.config_loader import (
    build,
    check_keys,
    check_types,
    default_of,
    read_toml,
    set_dotted,
    show_default,
)


class Oops(ValueError):
    """A package's own error class, as the loader is handed one."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Limits:
    velocity: float
    jerk: float = 100.0


@dataclass(frozen=True)
class Camera:
    name: str
    fps: int = 30

    def __post_init__(self) -> None:
        check_types(self, Oops, section=f"cameras.{self.name}")


@dataclass(frozen=True)
class Ball:
    center: tuple[float, float, float]
    radius: float
    kind: Literal["ball"] = "ball"


@dataclass(frozen=True)
class Plane:
    offset: float
    kind: Literal["plane"] = "plane"


@dataclass(frozen=True)
class Top:
    rate_hz: float = 100.0
    port: int | None = 9100
    limits: Limits = field(default_factory=lambda: Limits(velocity=0.5))
    cameras: Mapping[str, Camera] = field(default_factory=dict)
    zones: tuple[Ball | Plane, ...] = ()

    def __post_init__(self) -> None:
        check_types(self, Oops)


def test_a_section_overrides_only_the_keys_it_names() -> None:
    top = build(Top, {"limits": {"jerk": 5}}, Oops)
    assert top.limits == Limits(velocity=0.5, jerk=5)  # velocity: the field's default section's


def test_tables_of_sections_get_their_name_and_lists_are_picked_by_kind() -> None:
    top = build(
        Top,
        {
            "cameras": {"front": {"fps": 15}},
            "zones": [{"kind": "ball", "center": [0, 0, 1], "radius": 0.1}, {"kind": "plane", "offset": 0.0}],
        },
        Oops,
    )
    assert top.cameras == {"front": Camera(name="front", fps=15)}
    assert top.zones == (Ball(center=(0, 0, 1), radius=0.1), Plane(offset=0.0))


def test_false_stands_for_none_in_an_optional_field() -> None:
    assert build(Top, {"port": False}, Oops).port is None


@pytest.mark.parametrize(
    ("data", "message", "field"),
    [
        ({"rat_hz": 5}, "unknown key 'rat_hz' (known: cameras, limits, port, rate_hz, zones)", "rat_hz"),
        (
            {"limits": {"velocty": 1}},
            "limits: unknown key 'velocty' (known: jerk, velocity)",
            "limits.velocty",
        ),
        ({"limits": 3}, "limits must be a table, got 3", "limits"),
        ({"cameras": {"front": 1}}, "cameras.front must be a table, got 1", "cameras.front"),
        (
            {"cameras": {"front": {"fps": "x"}}},
            "cameras.front.fps is 'x' (str), expected an integer",
            "cameras.front.fps",
        ),
        ({"zones": [{"radius": 1}]}, "zones[0] must be a table with a kind (ball, plane)", "zones[0]"),
        (
            {"zones": [{"kind": "cone"}]},
            "zones[0].kind is 'cone', expected one of ball, plane",
            "zones[0].kind",
        ),
        (
            {"zones": [{"kind": "ball", "center": [0, 0, 0]}]},
            "zones[0].radius is missing",
            "zones[0]",
        ),
        ({"rate_hz": True}, "rate_hz is True (bool), expected a finite number", "rate_hz"),
        ({"rate_hz": float("nan")}, "rate_hz is nan (float), expected a finite number", "rate_hz"),
        ({"port": "9100"}, "port is '9100' (str), expected an integer (or false for none)", "port"),
    ],
)
def test_messages_name_the_key_path_and_the_value(data: dict, message: str, field: str) -> None:
    with pytest.raises(Oops) as info:
        build(Top, data, Oops)
    assert str(info.value) == message
    assert info.value.field == field


def test_an_unknown_key_in_a_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "top.toml"
    path.write_text("[limits]\nvelocty = 1\n")
    data = read_toml(path, Oops, label=f"config {path}")
    with pytest.raises(Oops) as info:
        check_keys(Top, data, Oops, source=f"config {path}")
    assert str(info.value) == f"config {path}: limits: unknown key 'velocty' (known: jerk, velocity)"
    assert info.value.field == "limits.velocty"


def test_file_problems_are_one_line_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(Oops, match=r"^config .*nope\.toml: no such file$"):
        read_toml(tmp_path / "nope.toml", Oops, label=f"config {tmp_path / 'nope.toml'}")
    bad = tmp_path / "bad.toml"
    bad.write_text("[limits\n")
    with pytest.raises(Oops, match=r"^config .*bad\.toml: not valid TOML \(.*line 1"):
        read_toml(bad, Oops, label=f"config {bad}")
    with pytest.raises(Oops, match=r"is a folder"):
        read_toml(tmp_path, Oops, label=f"config {tmp_path}")


def test_types_are_checked_in_the_constructor_too() -> None:
    """A section built in code goes through the same check as one read from a file."""
    with pytest.raises(Oops, match=r"^rate_hz is 'fast' \(str\), expected a finite number$"):
        Top(rate_hz="fast")  # type: ignore[arg-type]
    top = Top(rate_hz=5, zones=[])  # type: ignore[arg-type]
    assert top.rate_hz == 5.0 and isinstance(top.rate_hz, float) and top.zones == ()


def test_set_dotted_builds_tables_and_refuses_to_go_through_a_value() -> None:
    data: dict = {"limits": {"jerk": 1}}
    set_dotted(data, "limits.velocity", 2, Oops)
    assert data == {"limits": {"jerk": 1, "velocity": 2}}
    with pytest.raises(Oops, match=r"^rate_hz\.x: rate_hz is not a table$"):
        set_dotted({"rate_hz": 1}, "rate_hz.x", 2, Oops)


@pytest.mark.parametrize(
    ("key", "shown"),
    [
        ("rate_hz", "100"),  # a float as %g
        ("port", "9100"),
        ("limits.jerk", "100"),  # inside a section
        ("limits.velocity", "0.5"),  # the section default's own value, not the class's
        ("zones", "()"),
    ],
)
def test_defaults_as_help_shows_them(key: str, shown: str) -> None:
    assert show_default(default_of(Top, key)) == shown


def test_show_default_words() -> None:
    assert (show_default(None), show_default(True), show_default(False), show_default("")) == (
        "none",
        "on",
        "off",
        "''",
    )
    with pytest.raises(KeyError, match="nope"):
        default_of(Top, "limits.nope")

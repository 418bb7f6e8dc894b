"""Checks shared by the tensor backends: does the model's input signature fit the manifest?

A tensor model takes one ``[B, 3, H, W]`` image per camera (manifest order, named as the camera)
and ``state`` ``[B, S]``. Comparing that with the manifest at load turns a silent shape error on the
first request into ``bundle x/policy.toml: cameras.wrist.height is 240, the model expects 224``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inference_server.bundle import Bundle

__all__ = ["check_input_dtypes", "check_input_shapes", "expected_input_names"]


def expected_input_names(bundle: Bundle) -> list[str]:
    return [*(c.name for c in bundle.cameras), "state"]


def check_input_shapes(bundle: Bundle, shapes: Sequence[Sequence[int | str | None]]) -> None:
    """``shapes``: the model's input shapes in order; non-int entries are dynamic (skipped)."""
    names = expected_input_names(bundle)
    if len(shapes) != len(names):
        raise bundle.error(
            f"the model takes {len(shapes)} inputs, the manifest implies {len(names)} ({', '.join(names)})",
            field="cameras",
        )
    for cam, shape in zip(bundle.cameras, shapes, strict=False):
        if len(shape) != 4:
            raise bundle.error(
                f"cameras.{cam.name}: the model's input has shape {list(shape)}, expected [B, 3, H, W]",
                field=f"cameras.{cam.name}",
            )
        for key, want, got in (("height", cam.height, shape[2]), ("width", cam.width, shape[3])):
            if isinstance(got, int) and got != want:
                raise bundle.error(
                    f"cameras.{cam.name}.{key} is {want}, the model expects {got}",
                    field=f"cameras.{cam.name}.{key}",
                )
        if isinstance(shape[1], int) and shape[1] != 3:
            raise bundle.error(
                f"cameras.{cam.name}: the model expects {shape[1]} channels, the server sends 3 (RGB)",
                field=f"cameras.{cam.name}",
            )
    state = shapes[-1]
    if len(state) != 2:
        raise bundle.error(
            f"state: the model's input has shape {list(state)}, expected [B, {bundle.state_dim}]",
            field="state_dim",
        )
    if isinstance(state[1], int) and state[1] != bundle.state_dim:
        raise bundle.error(
            f"state_dim is {bundle.state_dim}, the model expects {state[1]}", field="state_dim"
        )


def check_input_dtypes(bundle: Bundle, dtypes: Sequence[str | None], accepted: Sequence[str]) -> None:
    """``dtypes``: the model's input element types in order (``None`` = unknown, skipped).

    The server feeds every input as a floating-point tensor (images scaled to [0, 1]); an input
    declared as anything else (int64, uint8, bool...) would fail on the first request, so it is a
    :class:`BundleError` naming the input and the types the backend can feed (``accepted``).
    """
    for name, dtype in zip(expected_input_names(bundle), dtypes, strict=False):
        if dtype is not None and dtype not in accepted:
            what = "state [B, S]" if name == "state" else "images [B, 3, H, W] in [0, 1]"
            raise bundle.error(
                f"{bundle.model_field}: the model's input {name!r} is {dtype}; "
                f"this backend feeds {what} as {', '.join(accepted)}",
                field=bundle.model_field,
            )

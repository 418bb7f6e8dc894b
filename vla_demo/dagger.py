"""One DAgger round (Ross, Gordon and Bagnell, AISTATS 2011) for the demo policy: the bundle acts
in the simulation (the expert giving a share of the chunks), every visited state is labelled by
the expert, and the model is trained further on the old data plus the new.

    python -m vla_demo.dagger SRC_BUNDLE OUT_BUNDLE EPISODES EPOCHS SEED EXPERT_SHARE DATA.npz...

writes ``build/vla_demo/dagger-<SRC name>-<EPISODES>.npz`` (reused when present) and the bundle
``OUT_BUNDLE``. Behaviour cloning alone leaves the policy in states the expert never visited
(a grasp a centimetre off, a stall above the cube); this round puts exactly those in the data.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

__all__ = ["dagger_round"]


def dagger_round(
    source: Path,
    out: Path,
    *,
    episodes: int,
    epochs: int,
    seed: int,
    expert_share: float,
    data: list[Path],
) -> dict[str, object]:
    """Run one round from the bundle ``source``; returns the training report. Scene seeds:
    ``TRAIN_SEED_BASE + seed * 100000 + i`` (use a ``seed`` no earlier round used)."""
    from vla_demo.data import Dataset, generate
    from vla_demo.train import TrainConfig, export_bundle, load_trained, train

    path = Path(f"build/vla_demo/dagger-{source.name}-{episodes}.npz")
    start = time.perf_counter()
    if path.exists():
        new = Dataset.load(path)
    else:
        new = generate(episodes, seed=seed, policy=source, expert_share=expert_share)
        new.save(path)
    logging.info("DAgger data: %d samples in %.0f s", len(new), time.perf_counter() - start)
    combined = Dataset.concat([*(Dataset.load(p) for p in data), new])
    model, stats, report = train(combined, TrainConfig(epochs=epochs, lr=1e-3), init=load_trained(source))
    export_bundle(model, stats, out, report=report)
    return report


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO)
    source, out, episodes, epochs, seed, share, *data = argv
    report = dagger_round(
        Path(source), Path(out), episodes=int(episodes), epochs=int(epochs), seed=int(seed),
        expert_share=float(share), data=[Path(p) for p in data],
    )  # fmt: skip
    print(json.dumps({k: v for k, v in report.items() if k != "config"}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The demo: a small language-conditioned policy that solves the simulated cube task.

``python -m vla_demo`` (what ``make demo`` runs) serves the committed bundle ``policies/demo/``
and runs the robot agent on the simulated arm in closed loop; ``python -m vla_demo train``
reproduces the bundle: scripted expert -> noisy demonstrations -> behaviour cloning -> export.
Needs the ``server`` extra (torch) for training; serving the bundle needs torch or onnxruntime.
"""

from __future__ import annotations

"""The wire contract shared by the inference server and the robot agent.

``vla.v1`` holds the code generated from ``proto/vla/v1/policy.proto``; ``vla.vocabulary`` the
words a spec uses (action spaces, state names), defined once for both sides; ``vla.codec`` turns
numpy arrays and images into those messages and back. Both sides import this small package and
never each other. Importing the package itself loads only the vocabulary (standard library).
"""

from vla.vocabulary import ACTION_SPACES, STATE_NAMES, ActionSpaceName

__all__ = ["ACTION_SPACES", "STATE_NAMES", "ActionSpaceName"]

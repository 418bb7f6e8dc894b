"""The tiny VLA: a small CNN for the camera, word embeddings for the instruction, an MLP for the
state, and a head that outputs a whole chunk of actions.

The instruction modulates the image features (FiLM), so the network can pick out the named
cube; a spatial soft-argmax turns feature maps into image coordinates, which is what the task
needs (where the cube is relative to the gripper) and which a small CNN learns quickly. Inputs
follow the server's tensor convention: ``front`` float ``[B, 3, H, W]`` in ``[0, 1]``, ``state``
``[B, S]`` normalised, plus ``instruction`` int64 token ids ``[B, T]``; output: normalised
actions ``[B, chunk_length, action_dim]``, the last entry (the gripper) squashed into ``[0, 1]``
by a sigmoid (the bundle's gripper statistics are mean 0, std 1, so it is the opening itself).

An auxiliary head estimates where the named cube (x, y, z) and the pad (x, y) are, in the
state's normalised units; the action head gets those and their offsets from the tool.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["TinyVLA"]


class SpatialSoftArgmax(nn.Module):
    """Per channel, the expected (x, y) under a softmax over the feature map, in [-1, 1]."""

    def __init__(self, height: int, width: int, log_temperature: float = -2.0) -> None:
        super().__init__()
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
        self.register_buffer("xs", xs.reshape(1, 1, -1), persistent=False)
        self.register_buffer("ys", ys.reshape(1, 1, -1), persistent=False)
        # Start sharp: a near-uniform softmax gives every keypoint the image centre and almost no
        # gradient, and the network then learns the average move instead of where the cube is.
        self.log_temperature = nn.Parameter(torch.tensor(float(log_temperature)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[0], x.shape[1]
        weights = torch.softmax(x.reshape(b, c, -1) * torch.exp(-self.log_temperature), dim=-1)
        return torch.cat([(weights * self.xs).sum(-1), (weights * self.ys).sum(-1)], dim=1)


class TinyVLA(nn.Module):
    def __init__(
        self,
        *,
        vocab_size: int,
        image_size: int = 96,
        state_dim: int = 4,
        chunk_length: int = 16,
        action_dim: int = 7,
        target_dim: int = 5,
        colour_ids: tuple[int, int, int] | None = None,
        width: int = 32,
        embed_dim: int = 32,
        hidden: int = 256,
    ) -> None:
        super().__init__()
        self.chunk_length = chunk_length
        self.action_dim = action_dim
        self.target_dim = target_dim
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        half = width // 2
        side = (image_size + 3) // 4
        # Cheap on purpose (about 10 M multiply-adds at 96x96): it trains on two shared CPU cores.
        self.conv1 = nn.Conv2d(5, half, 3, stride=2, padding=1)  # RGB + 2 coordinate channels
        self.conv2 = nn.Conv2d(half, width, 3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(width, width, 3, padding=1)
        self.conv4 = nn.Conv2d(width, width, 1)
        self.film1 = nn.Linear(embed_dim, 2 * half)
        self.film2 = nn.Linear(embed_dim, 2 * width)
        # One keypoint chosen by the instruction: score = features . query(words), soft-argmax.
        self.query = nn.Linear(embed_dim, width)
        self.attend = SpatialSoftArgmax(side, side)
        # And one straight from the pixels' colour, at full resolution (a 4 cm cube is about 5
        # pixels across at 128), with no learning at all: the cubes are saturated red, green and
        # blue, so "how much more of the named channel than of the others" (chroma above a
        # threshold, scaled sharp) lights up the named cube alone, and its soft-argmax places it
        # to a fraction of a pixel. A learned score map found the 5-pixel cube too slowly on a
        # CPU budget (the named-cube estimate stayed at the mean position after 1600 steps).
        colour_of_word = torch.zeros(vocab_size, 3)
        for channel, index in enumerate(colour_ids or ()):
            colour_of_word[index, channel] = 1.0
        self.register_buffer("colour_of_word", colour_of_word, persistent=False)
        self.colour_attend = SpatialSoftArgmax(image_size, image_size, log_temperature=0.0)
        self.colour_attend.log_temperature.requires_grad_(False)
        self.film3 = nn.Linear(embed_dim, 2 * width)
        self.keypoints = SpatialSoftArgmax(side, side)
        ys, xs = torch.meshgrid(
            torch.linspace(-1, 1, image_size), torch.linspace(-1, 1, image_size), indexing="ij"
        )
        self.register_buffer("coords", torch.stack([xs, ys])[None], persistent=False)
        self.state_mlp = nn.Sequential(nn.Linear(state_dim, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU())
        # Where the named cube is (x, y, in the state's normalised units), trained with an
        # auxiliary loss: the head then only has to turn "cube there, tip here" into a path.
        self.locate = nn.Sequential(
            nn.Linear(2 * width + embed_dim + 4 + state_dim, 128), nn.ReLU(), nn.Linear(128, target_dim)
        )
        self.head = nn.Sequential(
            nn.Linear(2 * width + 64 + embed_dim + 2 * target_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, chunk_length * action_dim),
        )

    def chroma_score(self, front: torch.Tensor, instruction: torch.Tensor) -> torch.Tensor:
        """``[B, 1, H, W]``: 40 x (named channel - max of the other two - 0.2), floored at 0, for
        the colour words (red, green, blue: ``colour_ids``) in the instruction."""
        named = self.colour_of_word[instruction].sum(1).clamp(max=1.0)  # [B, 3]
        others = torch.stack(
            [
                torch.maximum(front[:, 1], front[:, 2]),
                torch.maximum(front[:, 0], front[:, 2]),
                torch.maximum(front[:, 0], front[:, 1]),
            ],
            dim=1,
        )
        chroma = torch.relu(front - others - 0.2)  # [B, 3, H, W]
        return 40.0 * (chroma * named[:, :, None, None]).sum(1, keepdim=True)

    def encode_instruction(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = (tokens != 0).unsqueeze(-1).to(self.embed.weight.dtype)
        return (self.embed(tokens) * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def forward(self, front: torch.Tensor, state: torch.Tensor, instruction: torch.Tensor) -> torch.Tensor:
        raw = self.forward_with_target(front, state, instruction)[0]
        return torch.cat([raw[..., :-1], torch.sigmoid(raw[..., -1:])], dim=-1)

    def forward_with_target(
        self, front: torch.Tensor, state: torch.Tensor, instruction: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Actions with the gripper as a logit ``[B, H, A]``, the estimated target positions
        ``[B, target_dim]`` and where the colour pathway sees the named cube in the image
        ``[B, 2]`` (soft-argmax units): the auxiliary outputs used in training."""
        words = self.encode_instruction(instruction)
        coords = self.coords.expand(front.shape[0], -1, -1, -1).to(front.dtype)
        gamma, beta = self.film1(words).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
        x = torch.relu(self.conv1(torch.cat([front, coords], dim=1)) * (1 + gamma) + beta)
        gamma, beta = self.film2(words).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
        x = torch.relu(self.conv2(x) * (1 + gamma) + beta)
        gamma, beta = self.film3(words).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
        x = torch.relu(self.conv3(x) * (1 + gamma) + beta)
        features = self.conv4(x)
        points = self.keypoints(features)
        score = (features * self.query(words).unsqueeze(-1).unsqueeze(-1)).sum(1, keepdim=True)
        named = self.attend(score)
        by_colour = self.colour_attend(self.chroma_score(front, instruction))
        target = self.locate(torch.cat([points, words, named, by_colour, state], dim=1))
        # cube (x, y, z) and pad (x, y) relative to the tool (x, y, z) / (x, y)
        offset = target - torch.cat([state[:, :3], state[:, :2]], dim=1)
        features = torch.cat([points, self.state_mlp(state), words, target, offset], dim=1)
        return self.head(features).reshape(-1, self.chunk_length, self.action_dim), target, by_colour

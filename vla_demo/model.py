"""The tiny VLA: a small CNN for the camera, word embeddings for the instruction, an MLP for the
state, and a head that outputs a whole chunk of actions.

The instruction modulates the image features (FiLM), so the network can pick out the named
cube; a spatial soft-argmax turns feature maps into image coordinates, which is what the task
needs (where the cube is relative to the gripper) and which a small CNN learns quickly. Inputs
follow the server's tensor convention: ``front`` float ``[B, 3, H, W]`` in ``[0, 1]``, ``state``
``[B, S]`` normalised, plus ``instruction`` int64 token ids ``[B, T]``; output: normalised
actions ``[B, chunk_length, action_dim]``.
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
        state_dim: int = 3,
        chunk_length: int = 16,
        action_dim: int = 7,
        width: int = 32,
        embed_dim: int = 32,
        hidden: int = 256,
    ) -> None:
        super().__init__()
        self.chunk_length = chunk_length
        self.action_dim = action_dim
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
        # And one straight from the pixels' colour: score = w(words) . rgb at half resolution. It
        # is linear in w, so the gradient finds "the named colour" within a few hundred steps,
        # where a deep score map may wander for thousands.
        self.colour_query = nn.Linear(embed_dim, 4)
        self.colour_attend = SpatialSoftArgmax(image_size // 2, image_size // 2, log_temperature=-3.0)
        self.film3 = nn.Linear(embed_dim, 2 * width)
        self.keypoints = SpatialSoftArgmax(side, side)
        ys, xs = torch.meshgrid(
            torch.linspace(-1, 1, image_size), torch.linspace(-1, 1, image_size), indexing="ij"
        )
        self.register_buffer("coords", torch.stack([xs, ys])[None], persistent=False)
        self.state_mlp = nn.Sequential(nn.Linear(state_dim, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU())
        # Where the named cube is (x, y, in the state's normalised units), trained with an
        # auxiliary loss: the head then only has to turn "cube there, tip here" into a path.
        self.locate = nn.Sequential(nn.Linear(2 * width + embed_dim + 4, 128), nn.ReLU(), nn.Linear(128, 2))
        self.head = nn.Sequential(
            nn.Linear(2 * width + 64 + embed_dim + 4, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, chunk_length * action_dim),
        )

    def encode_instruction(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = (tokens != 0).unsqueeze(-1).to(self.embed.weight.dtype)
        return (self.embed(tokens) * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def forward(self, front: torch.Tensor, state: torch.Tensor, instruction: torch.Tensor) -> torch.Tensor:
        return self.forward_with_target(front, state, instruction)[0]

    def forward_with_target(
        self, front: torch.Tensor, state: torch.Tensor, instruction: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Actions and the estimated target position (the auxiliary output used in training)."""
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
        colour_w = self.colour_query(words)
        small = nn.functional.avg_pool2d(front, 2)
        colour_score = (small * colour_w[:, :3, None, None]).sum(1, keepdim=True) + colour_w[
            :, 3:, None, None
        ]
        by_colour = self.colour_attend(colour_score)
        target = self.locate(torch.cat([points, words, named, by_colour], dim=1))
        offset = target - state[:, :2]
        features = torch.cat([points, self.state_mlp(state), words, target, offset], dim=1)
        return self.head(features).reshape(-1, self.chunk_length, self.action_dim), target

"""Heads of sequence methods (seq-JEPA, docs/seq_jepa.md): the action embedding, the observation
tokens ``[zᵢ ‖ emb(aᵢ)]`` and the transformer that aggregates them.

Layout of the reference (github.com/hafezgh/seq-jepa, ``src/models.py``,
``SeqJEPA_Transforms``): each relative action is embedded by a bias-free linear layer and a
non-affine BatchNorm; token ``i`` of a sequence of ``M`` observations is the view's encoding
concatenated with the embedding of the action from view ``i`` to view ``i + 1``, the last
token's action slot zeroed; a learnable aggregate token (initialised to zeros) is prepended,
and there is no positional embedding — order enters only through the actions.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ActionEmbedding(nn.Module):
    """Linear (no bias) + BatchNorm without affine parameters: ``[..., A] -> [..., dim]``.

    BatchNorm normalises over every leading position at once (one call on ``[B, M, A]``
    normalises over the ``B·M`` actions, as the reference's flattened call).
    """

    def __init__(self, action_dim: int, dim: int = 128) -> None:
        super().__init__()
        self.dim = dim
        self.linear = nn.Linear(action_dim, dim, bias=False)
        self.norm = nn.BatchNorm1d(dim, affine=False)

    def forward(self, action: Tensor) -> Tensor:
        lead = action.shape[:-1]
        flat = action.reshape(-1, action.shape[-1])
        return self.norm(self.linear(flat.to(self.linear.weight.dtype))).view(*lead, self.dim)


def sequence_tokens(z: Tensor, between: Tensor) -> Tensor:
    """Observation tokens ``[zᵢ ‖ emb(aᵢ)]`` with the last action slot zero.

    Args:
        z: ``[B, M, D]`` encodings of the ``M`` observed views.
        between: ``[B, M − 1, E]`` embeddings of the actions from view ``i`` to ``i + 1``.
    Returns:
        ``[B, M, D + E]``.
    """
    b, m, _ = z.shape
    if between.shape[:2] != (b, m - 1):
        raise ValueError(
            f"{m} observations need {m - 1} actions between them, got {tuple(between.shape)}"
        )
    last = between.new_zeros(b, 1, between.shape[-1])
    return torch.cat((z, torch.cat((between, last), dim=1)), dim=-1)


class AggregateTransformer(nn.Module):
    """A learnable aggregate token prepended to the observation tokens, a post-norm
    ``nn.TransformerEncoder`` (ReLU MLP of ``mlp_ratio × dim``) and a final LayerNorm; the
    output at the aggregate token is the sequence's representation.

    Args:
        dim: token width (seq-JEPA: 512 + 128 = 640).
        heads, layers, mlp_ratio: 4, 3, 4 in seq-JEPA.
        dropout: torch's default 0.1, which the reference inherits.
    Shapes: ``tokens [B, M, dim] -> [B, dim]``.
    """

    def __init__(
        self, dim: int, heads: int = 4, layers: int = 3, mlp_ratio: int = 4, dropout: float = 0.1
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"token width {dim} is not divisible by {heads} attention heads")
        self.aggregate_token = nn.Parameter(torch.zeros(1, 1, dim))
        layer = nn.TransformerEncoderLayer(
            d_model=dim,
            nhead=heads,
            dim_feedforward=dim * mlp_ratio,
            dropout=dropout,
            batch_first=True,
        )
        self.encoder = nn.TransformerEncoder(
            layer, num_layers=layers, norm=nn.LayerNorm(dim), enable_nested_tensor=False
        )

    def forward(self, tokens: Tensor) -> Tensor:
        agg = self.aggregate_token.expand(tokens.shape[0], -1, -1)
        return self.encoder(torch.cat((agg, tokens), dim=1))[:, 0]

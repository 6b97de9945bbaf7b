"""What the evaluation stage may use of a trained method: the whole evaluation-facing
interface, declared in one place (``docs/architecture.md``).

:class:`equissl.ssl.base.SSLMethod` implements it; the evaluation stage
(:mod:`equissl.eval`) and the baseline models it puts through the same probes
(:mod:`equissl.eval.baselines`) use nothing else of a method, so a method's training
machinery can change without touching evaluation.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from torch import Tensor


@runtime_checkable
class FrozenRepresentation(Protocol):
    """A frozen model as the probes see it.

    Attributes:
        parts: named slices of the representation (``full`` always; ``inv`` / ``equi``
            for split methods).
        part_dims: width of each part.
        sequence_representation: whether :meth:`represent_sequence` exists.
        online_probe_part: the part the online classifier read during pretraining
            (``None``: none), whose :meth:`online_logits` evaluation may score.
        sequence_encoding_part: the part whose per-view encodings
            :meth:`aggregate_encodings` aggregates (``None``: it does not exist).
        predictor_part: the part the method's predictor maps under an action (``None``:
            no predictor; then :meth:`prediction_embedding` and :meth:`predict` raise).
        num_views: views per object the method was trained on.
        action: the action the method is conditioned on (an
            :class:`equissl.datasets.contract.ActionSpace` selection, or ``None``).

    Plus the ``torch.nn.Module`` calls ``eval()``, ``to(device)`` and ``parameters()``.
    """

    parts: dict[str, slice]
    part_dims: dict[str, int]
    sequence_representation: bool
    sequence_encoding_part: str | None
    online_probe_part: str | None
    predictor_part: str | None
    num_views: int
    action: Any

    def represent(self, views: Tensor) -> dict[str, Tensor]:
        """``views [B, *view_shape]`` -> ``{part: [B, D_part]}``."""
        ...

    def represent_sequence(self, views: Tensor, latents: Tensor) -> dict[str, Tensor]:
        """``views [B, M, *view_shape]``, ``latents [B, M, P]`` -> ``{part: [B, D_part]}``."""
        ...

    def aggregate_encodings(self, z: Tensor, latents: Tensor) -> dict[str, Tensor]:
        """Encodings ``z [B, M, D]`` of :attr:`sequence_encoding_part` and latents
        ``[B, M, P]`` -> ``{part: [B, D_part]}``, as :meth:`represent_sequence` of the views."""
        ...

    def online_logits(self, rep: Tensor) -> Tensor:
        """The online classifier's logits ``[B, C]`` of representations of the part
        ``online_probe_part`` (``None``: no online classifier read a part)."""
        ...

    def prediction_embedding(self, rep: Tensor) -> Tensor:
        """Representation ``[B, D_part]`` of :attr:`predictor_part` -> embedding ``[B, E]``."""
        ...

    def predict(self, embedding: Tensor, action: Tensor) -> Tensor:
        """Embedding ``[B, E]`` and action ``[B, A]`` -> predicted embedding ``[B, E]``."""
        ...

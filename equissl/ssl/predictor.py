"""The predictor interface shared by methods whose predictor maps equivariant-projector
embeddings under an action."""

from __future__ import annotations

from torch import Tensor


class ProjectedPredictor:
    """Mixin for methods whose predictor maps ``projector_equi`` embeddings under an action
    (``self.predictor(embedding [B, E], action [B, A])``): SIE, SEN, EquiMod. Put it before
    :class:`SSLMethod` in the bases."""

    def prediction_embedding(self, rep: Tensor) -> Tensor:
        return self.projector_equi(rep)

    def predict(self, embedding: Tensor, action: Tensor) -> Tensor:
        return self.predictor(embedding, action)

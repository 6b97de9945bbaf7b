"""The evaluation stage: frozen-backbone probes, metrics and reports (docs/evaluation.md)."""

from equissl.eval.openblas import load_faiss

# faiss first, with its bundled OpenBLAS on this CPU's best kernels (read once, when the
# library loads): see equissl.eval.openblas.
load_faiss()

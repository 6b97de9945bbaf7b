"""The evaluation stage: frozen-backbone probes, metrics and reports (DESIGN §5)."""

from equissl.eval.openblas import select_kernels

# Before any module of the stage imports faiss: its bundled OpenBLAS reads the kernel
# choice once, when it loads (equissl.eval.openblas).
select_kernels()

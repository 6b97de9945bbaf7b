"""Evaluation probes: every module of this package registers its probe in ``PROBES``."""

from equissl.eval.probes.base import EvalContext, Probe, ProbeResult
from equissl.registries import PROBES

__all__ = ["PROBES", "EvalContext", "Probe", "ProbeResult"]

"""Evaluation probes: every module of this package registers its probe in ``PROBES``."""

from equissl.eval.probes.base import PROBES, EvalContext, Probe, ProbeResult

__all__ = ["PROBES", "EvalContext", "Probe", "ProbeResult"]

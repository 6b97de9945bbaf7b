"""3DIEBench-style renders with Mitsuba 3 and trimesh (DESIGN §2.3)."""

from equissl.datasets.renderer.generate import generate_iebench

__all__ = ["generate_iebench"]

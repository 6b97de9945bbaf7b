"""One 3DIEBench-style view rendered with Mitsuba 3 (DESIGN §2.3).

Scene (z up, scene units): camera at distance 2.5 from the origin, polar angle π/4 from
the +z axis (45° above the horizon), azimuth 0 (in the x–z plane), aimed at the origin
where the object's bounding-box centre sits before translation; a diffuse floor plane at
z = −1 of colour HSV(floor_hue, 0.6, 0.6); a directional sun from above plus a spot light
(cone half-angle π/8) at radius 4 placed at polar θ / azimuth φ and aimed at the origin,
coloured HSV(spot_hue, 1, 0.8). The object is a light-grey diffuse surface, rotated by
``R = Rotation.from_euler("xyz", angles).as_matrix()`` about its centre (``v' = R v``),
then translated (3DIEBench-T).
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np

CAMERA_DISTANCE = 2.5
CAMERA_POLAR = np.pi / 4
FLOOR_Z = -1.0
LIGHT_RADIUS = 4.0
SPOT_CUTOFF_DEG = np.rad2deg(np.pi / 8)
FOV_DEG = 40.0  # fits an object of radius 0.85 at any rotation
FOV_TRANSLATED_DEG = 55.0  # leaves room for translations of ±0.5
OBJECT_ALBEDO = 0.75
SUN_IRRADIANCE = 1.6
SPOT_INTENSITY = 40.0

_VARIANT: str | None = None


def select_variant() -> str:
    """``cuda_ad_rgb`` when a CUDA GPU is usable, else ``scalar_rgb`` (set once per process)."""
    global _VARIANT
    if _VARIANT is None:
        import mitsuba as mi

        choice = "scalar_rgb"
        try:
            import torch

            if torch.cuda.is_available() and "cuda_ad_rgb" in mi.variants():
                mi.set_variant("cuda_ad_rgb")
                choice = "cuda_ad_rgb"
        except Exception:  # no usable CUDA driver for Dr.Jit: fall back to the CPU
            choice = "scalar_rgb"
        if choice == "scalar_rgb":
            mi.set_variant("scalar_rgb")
        _VARIANT = choice
    return _VARIANT


def hsv(h: float, s: float, v: float) -> list[float]:
    return list(colorsys.hsv_to_rgb(float(h) % 1.0, s, v))


def object_to_world(latent: np.ndarray) -> np.ndarray:
    """4×4 transform of the object for a 7- or 10-value latent: translate · rotate."""
    from scipy.spatial.transform import Rotation

    m = np.eye(4)
    m[:3, :3] = Rotation.from_euler("xyz", latent[:3]).as_matrix()
    if len(latent) == 10:
        m[:3, 3] = latent[7:10]
    return m


def spot_position(theta: float, phi: float) -> np.ndarray:
    return LIGHT_RADIUS * np.array([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi),
                                    np.cos(theta)])


def scene_dict(mesh_file: Path, latent: np.ndarray, resolution: int, spp: int) -> dict:
    """The Mitsuba scene description of one view."""
    import mitsuba as mi

    T = mi.ScalarTransform4f
    cam = CAMERA_DISTANCE * np.array([np.sin(CAMERA_POLAR), 0.0, np.cos(CAMERA_POLAR)])
    fov = FOV_TRANSLATED_DEG if len(latent) == 10 else FOV_DEG
    floor_hue, theta, phi, spot_hue = latent[3], latent[4], latent[5], latent[6]
    return {
        "type": "scene",
        "integrator": {"type": "path", "max_depth": 2},
        "sensor": {
            "type": "perspective", "fov": fov,
            "to_world": T().look_at(origin=cam.tolist(), target=[0, 0, 0], up=[0, 0, 1]),
            "film": {"type": "hdrfilm", "width": resolution, "height": resolution,
                     "rfilter": {"type": "box"}},
            "sampler": {"type": "multijitter", "sample_count": spp},
        },
        "floor": {
            "type": "rectangle", "to_world": T().translate([0, 0, FLOOR_Z]).scale(20),
            "bsdf": {"type": "diffuse",
                     "reflectance": {"type": "rgb", "value": hsv(floor_hue, 0.6, 0.6)}},
        },
        "object": {
            "type": "ply", "filename": str(mesh_file), "face_normals": True,
            "to_world": T(object_to_world(latent).tolist()),
            "bsdf": {"type": "diffuse", "reflectance": {"type": "rgb", "value": OBJECT_ALBEDO}},
        },
        "sun": {"type": "directional", "direction": [-0.4, 0.3, -1.0],
                "irradiance": {"type": "rgb", "value": SUN_IRRADIANCE}},
        "spot": {
            "type": "spot", "cutoff_angle": float(SPOT_CUTOFF_DEG),
            "to_world": T().look_at(origin=spot_position(theta, phi).tolist(), target=[0, 0, 0],
                                    up=[0, 0, 1] if np.sin(theta) > 1e-3 else [0, 1, 0]),
            "intensity": {"type": "rgb",
                          "value": [SPOT_INTENSITY * c for c in hsv(spot_hue, 1.0, 0.8)]},
        },
        "ambient": {"type": "constant", "radiance": {"type": "rgb", "value": 0.15}},
    }


def render_view(mesh_file: Path, latent: np.ndarray, resolution: int, spp: int,
                seed: int = 0) -> np.ndarray:
    """Render one view: ``[resolution, resolution, 3]`` uint8 sRGB."""
    import mitsuba as mi

    select_variant()
    scene = mi.load_dict(scene_dict(mesh_file, np.asarray(latent, dtype=np.float64),
                                    resolution, spp))
    image = mi.render(scene, seed=seed)
    return np.array(mi.util.convert_to_bitmap(image))[..., :3]

"""The 3DIEBench scene in Mitsuba 3 and the renderer of one object's views.

Conventions (z up, scene units; geometry as in the 3DIEBench BlenderProc script):

* Camera at distance 2.5 from the origin, polar angle π/4 from +z (45° above the floor's
  horizon) and azimuth π/2, i.e. at ``(0, 2.5 sin π/4, 2.5 cos π/4)``, aimed at the origin
  with +z up in the image; horizontal field of view 39.6° (Blender's default 50 mm lens on a
  36 mm sensor), widened to 50° for 3DIEBench-T so translated objects stay in frame.
* Object: bounding-box centre at the origin, rotated by
  ``R = Rotation.from_euler("xyz", latent[0:3]).as_matrix()`` about it (``v' = R (v + t)``, with
  ``t = latent[7:10]`` for 3DIEBench-T, as the published generator's ``R · T(t)``); a plain
  light-grey two-sided diffuse surface (albedo 0.6) for every object, so only shape tells
  the classes apart.
* Floor: plane z = −1, diffuse, albedo HSV(floor hue, 0.6, 0.6) (linear RGB).
* Sun: directional, white, from above and behind the camera (tilted 35° from straight down
  towards the camera's side), so object shadows fall mostly behind the object. The reference
  uses a straight-down Blender sun with a 90° angular size (very soft shadows); a hard sun
  straight down would instead throw a black shadow right under every object.
* Spot light at ``4 (sin θ cos φ, sin θ sin φ, cos θ)`` aimed at the origin, full cone angle
  π/8 (Blender's ``spot_size``; Mitsuba half-angle π/16) with a soft edge, colour
  HSV(spot hue, 1, 0.8).
* Monte-Carlo ray tracing of direct light (Mitsuba's ``direct`` integrator, one light sample
  and no BSDF sample per camera ray). Both lights are delta lights, which a BSDF-sampled ray
  can never hit, so this is the ``path`` integrator with ``max_depth`` 2 minus its wasted
  ray: same image, 30 % faster. The only noise is pixel anti-aliasing and the choice of
  light, which the multi-jittered sampler stratifies (at 8 spp the per-pixel noise is < 1
  grey level). Inter-reflections (``max_depth`` > 2) are left out: at 8–16 spp their noise
  costs more than their soft fill adds. Box pixel filter; linear radiance is clipped to
  [0, 1] and encoded as sRGB 8-bit (JPEG quality 95).
"""

from __future__ import annotations

import colorsys
import os

import numpy as np
from scipy.spatial.transform import Rotation

CAMERA_DISTANCE = 2.5
CAMERA_POLAR = np.pi / 4
CAMERA_AZIMUTH = np.pi / 2
FOV_DEG = 39.6
FOV_TRANSLATION_DEG = 50.0
FLOOR_Z = -1.0
FLOOR_HALF_SIZE = 20.0
LIGHT_RADIUS = 4.0
SPOT_CONE = np.pi / 8  # full cone angle
SPOT_BLEND = 0.15  # fraction of the half-angle over which the beam fades out
OBJECT_ALBEDO = 0.6
SUN_TILT = np.deg2rad(35.0)  # from straight down, towards the camera's side
SUN_IRRADIANCE = 1.6
SPOT_INTENSITY = 40.0  # W/sr per unit of colour; irradiance at the origin = 40 · rgb / 16

#: Variants tried in order when none is requested. ``llvm_ad_rgb`` is not auto-selected: with
#: an LLVM older than Dr.Jit needs, it aborts the whole process instead of raising.
AUTO_VARIANTS = ("cuda_ad_rgb", "scalar_rgb")
VARIANT_ENV = "EQUISSL_MITSUBA_VARIANT"


def select_variant(variant: str | None = None) -> str:
    """Set and return the Mitsuba variant of this process.

    ``variant`` (or the ``EQUISSL_MITSUBA_VARIANT`` environment variable) forces one;
    otherwise ``cuda_ad_rgb`` when a CUDA GPU can be used, else ``scalar_rgb``.

    Raises:
        ValueError: the requested variant is not compiled into this mitsuba build.
    """
    import mitsuba as mi

    wanted = variant or os.environ.get(VARIANT_ENV) or None
    if wanted is not None:
        if wanted not in mi.variants():
            raise ValueError(
                f"mitsuba variant {wanted!r} is not available; this build has {mi.variants()}"
            )
        if mi.variant() != wanted:
            mi.set_variant(wanted)
        return wanted
    if mi.variant() in AUTO_VARIANTS:
        return mi.variant()
    for name in AUTO_VARIANTS:
        if name not in mi.variants():
            continue
        try:
            mi.set_variant(name)
            return name
        except Exception:  # no CUDA driver/device: Dr.Jit raises ImportError or RuntimeError
            continue
    raise RuntimeError(f"no usable mitsuba variant among {AUTO_VARIANTS}; have {mi.variants()}")


def hsv_rgb(hue: float, saturation: float, value: float) -> tuple[float, float, float]:
    """HSV (all in [0, 1], hue wraps) to an RGB triple."""
    return colorsys.hsv_to_rgb(float(hue) % 1.0, saturation, value)


def spherical(radius: float, theta: float, phi: float) -> np.ndarray:
    """``[3]`` point at ``radius`` with polar angle ``theta`` from +z and azimuth ``phi``."""
    return radius * np.array(
        [np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)]
    )


def sun_direction() -> np.ndarray:
    """``[3]`` unit direction the sunlight travels: down, tilted ``SUN_TILT`` away from the
    camera side (the light comes from above and behind the camera)."""
    return -spherical(1.0, SUN_TILT, CAMERA_AZIMUTH)


def camera_position() -> np.ndarray:
    """``[3]`` world position of the camera."""
    return spherical(CAMERA_DISTANCE, CAMERA_POLAR, CAMERA_AZIMUTH)


def field_of_view(translation: bool) -> float:
    """Horizontal field of view in degrees (wider for 3DIEBench-T)."""
    return FOV_TRANSLATION_DEG if translation else FOV_DEG


def object_pose(latent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(R [3, 3], t_world [3])`` of one view: ``v_world = R v_object + t_world``.

    ``R = Rotation.from_euler("xyz", latent[:3]).as_matrix()`` (extrinsic X, then Y, then Z);
    ``t_world = R · latent[7:10]`` for a 10-value latent, else zero. The rotation acts after
    the translation, as the published 3DIEBench-T generator's ``matrix_basis = R · T(t)``
    (EquiCaps ``dataset_generation/main_3DIEBench_T_generation.py``), so the latents of our
    renders mean what they mean in the published data.
    """
    lat = np.asarray(latent, dtype=np.float64)
    rot = Rotation.from_euler("xyz", lat[:3]).as_matrix()
    t = rot @ lat[7:10] if lat.shape[0] >= 10 else np.zeros(3)
    return rot, t


def project_points(points: np.ndarray, resolution: int, translation: bool = False) -> np.ndarray:
    """Pixel coordinates ``[N, 2]`` (column, row; row 0 at the top) of world ``points [N, 3]``.

    A pinhole model of the scene camera (image up = world +z projected), for tests and tools.
    """
    pts = np.atleast_2d(np.asarray(points, dtype=np.float64))
    eye = camera_position()
    forward = -eye / np.linalg.norm(eye)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    rel = pts - eye
    depth = rel @ forward
    focal = (resolution / 2) / np.tan(np.deg2rad(field_of_view(translation)) / 2)
    col = resolution / 2 + focal * (rel @ right) / depth
    row = resolution / 2 - focal * (rel @ up) / depth
    return np.column_stack([col, row])


def linear_to_srgb8(img: np.ndarray) -> np.ndarray:
    """Linear RGB ``[H, W, 3]`` float to sRGB-encoded ``uint8``, clipping at 1."""
    x = np.clip(np.asarray(img, dtype=np.float64)[..., :3], 0.0, 1.0)
    srgb = np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)
    return np.round(srgb * 255.0).astype(np.uint8)


class ViewRenderer:
    """Renders views of one object, building its Mitsuba scene once.

    Each view rewrites the object's vertex buffer (``v' = R (v + t)``), the floor albedo and the
    spot light's pose and colour, then path-traces the frame.

    Args:
        vertices: ``[N, 3]`` normalised object vertices (bounding-box centre at the origin).
        faces: ``[F, 3]`` triangle indices.
        resolution: image side in pixels.
        spp: samples per pixel.
        translation: 3DIEBench-T scene (wider field of view).
        variant: Mitsuba variant; ``None`` = ``select_variant()``.
    """

    def __init__(
        self,
        vertices: np.ndarray,
        faces: np.ndarray,
        *,
        resolution: int,
        spp: int,
        translation: bool = False,
        variant: str | None = None,
    ) -> None:
        import mitsuba as mi

        self.variant = select_variant(variant)
        self._mi = mi
        self._v0 = np.asarray(vertices, dtype=np.float64)
        self.resolution = int(resolution)
        self.spp = int(spp)
        faces = np.asarray(faces, dtype=np.uint32)
        self.scene = mi.load_dict(self._scene_dict(self._make_mesh(self._v0, faces), translation))
        self.params = mi.traverse(self.scene)

    def _make_mesh(self, vertices: np.ndarray, faces: np.ndarray):
        mi = self._mi
        props = mi.Properties()
        props["bsdf"] = mi.load_dict(
            {
                "type": "twosided",
                "material": {
                    "type": "diffuse",
                    "reflectance": {"type": "rgb", "value": [OBJECT_ALBEDO] * 3},
                },
            }
        )
        mesh = mi.Mesh(
            "object",
            len(vertices),
            len(faces),
            props=props,
            has_vertex_normals=False,
            has_vertex_texcoords=False,
        )
        mp = mi.traverse(mesh)
        mp["vertex_positions"] = _like(mp["vertex_positions"], vertices)
        mp["faces"] = _like(mp["faces"], faces)
        mp.update()
        return mesh

    def _scene_dict(self, mesh, translation: bool) -> dict:
        mi = self._mi
        T = mi.ScalarTransform4f
        half = np.rad2deg(SPOT_CONE / 2)
        return {
            "type": "scene",
            "integrator": {"type": "direct", "emitter_samples": 1, "bsdf_samples": 0},
            "sensor": {
                "type": "perspective",
                "fov": field_of_view(translation),
                "fov_axis": "x",
                "to_world": T().look_at(
                    origin=camera_position().tolist(), target=[0, 0, 0], up=[0, 0, 1]
                ),
                "film": {
                    "type": "hdrfilm",
                    "width": self.resolution,
                    "height": self.resolution,
                    "pixel_format": "rgb",
                    "rfilter": {"type": "box"},
                },
                "sampler": {"type": "multijitter", "sample_count": self.spp},
            },
            "floor": {
                "type": "rectangle",
                "to_world": T()
                .translate([0, 0, FLOOR_Z])
                .scale([FLOOR_HALF_SIZE, FLOOR_HALF_SIZE, 1]),
                "bsdf": {
                    "type": "diffuse",
                    "reflectance": {"type": "rgb", "value": [0.5, 0.5, 0.5]},
                },
            },
            "object": mesh,
            "sun": {
                "type": "directional",
                "direction": sun_direction().tolist(),
                "irradiance": {"type": "rgb", "value": [SUN_IRRADIANCE] * 3},
            },
            "spot": {
                "type": "spot",
                "cutoff_angle": float(half),
                "beam_width": float(half * (1 - SPOT_BLEND)),
                "intensity": {"type": "rgb", "value": [SPOT_INTENSITY] * 3},
                "to_world": T().look_at(
                    origin=[0, 0, LIGHT_RADIUS], target=[0, 0, 0], up=[0, 1, 0]
                ),
            },
        }

    def set_view(self, latent: np.ndarray) -> None:
        """Pose the object and set the floor and spot light for one 7- or 10-value latent."""
        mi = self._mi
        lat = np.asarray(latent, dtype=np.float64)
        rot, t = object_pose(lat)
        p = self.params
        p["object.vertex_positions"] = _like(p["object.vertex_positions"], self._v0 @ rot.T + t)
        p["floor.bsdf.reflectance.value"] = mi.Color3f(*hsv_rgb(lat[3], 0.6, 0.6))
        pos = spherical(LIGHT_RADIUS, lat[4], lat[5])
        p["spot.to_world"] = mi.Transform4f().look_at(
            origin=pos.tolist(), target=[0, 0, 0], up=_up_for(-pos).tolist()
        )
        rgb = np.asarray(hsv_rgb(lat[6], 1.0, 0.8)) * SPOT_INTENSITY
        p["spot.intensity.value"] = mi.Color3f(*rgb.tolist())
        p.update()

    def render(self, latent: np.ndarray, seed: int = 0) -> np.ndarray:
        """``[H, W, 3]`` uint8 sRGB image of the view described by ``latent``."""
        self.set_view(latent)
        img = self._mi.render(self.scene, spp=self.spp, seed=int(seed))
        return linear_to_srgb8(np.array(img))

    def object_vertices(self) -> np.ndarray:
        """``[N, 3]`` object vertices as currently stored in the Mitsuba scene (world frame)."""
        return np.array(self.params["object.vertex_positions"], dtype=np.float64).reshape(-1, 3)


def _like(template, array: np.ndarray):
    """Convert a numpy array to the Dr.Jit buffer type of ``template`` (flattened)."""
    flat = np.ascontiguousarray(np.ravel(array))
    if np.issubdtype(flat.dtype, np.floating):
        flat = flat.astype(np.float32)
    return type(template)(flat)


def _up_for(direction: np.ndarray) -> np.ndarray:
    """A world axis far from parallel to ``direction`` (an ``up`` for ``look_at``)."""
    return np.eye(3)[int(np.argmin(np.abs(direction)))]

"""Large-yaw faces synthesized from the labelled faces, the 300W-LP way, with exact labels (issue 27 b).

Few of the 1,154 labelled faces are in profile, and every teacher reads profiles short (about 60 degrees where
the label says 90). Each AFLW2000-3D ``.mat`` holds the face's fitted 3D landmarks (``pt3d_68``: image x, y and
depth), so the face can be turned further in 3D and warped into its own photo: the new label is exact by
construction (`ypr_to_matrix` of the new angles), not a teacher's guess.

The head is a mesh of the 68 landmarks, forehead points and the silhouette of an ellipsoid head around them
(ears, hair), all in 3D; the background is pinned by fixed anchors. The mesh is triangulated in the source photo
over the points the camera sees there; each triangle is warped by the affine map of its turn, nearest last, and
triangles that turn away are dropped. The face is only ever turned away from the camera (larger |yaw|), so what
the new view shows was seen in the photo. Artifacts remain (the stretched side of the head, no back of the head),
as in 300W-LP.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import cv2
import numpy as np

from qa_headpose.core import angles
from qa_headpose.core.errors import DataError

# The head as an ellipsoid in units of the jaw width (landmarks 0 to 16) and of the brow-to-chin height: half
# breadth, half depth, and how far its centre lies behind the jaw's ends (near the ears).
HEAD_HALF_WIDTH = 0.58
HEAD_HALF_DEPTH = 0.75
HEAD_CENTRE_BEHIND_JAW = 0.12
HEAD_HALF_HEIGHT = 0.95  # of the brow-to-chin height
SILHOUETTE_POINTS = 24
# A vertex faces the camera when its normal's z exceeds this (cosine): a triangle needs all three.
FACING = 0.05


@dataclasses.dataclass(frozen=True)
class ProfileConfig:
    """Which turns to synthesize, per labelled face.

    Fields:
        per_face: synthesized faces per labelled face.
        min_yaw_deg, max_yaw_deg: the new |yaw| is drawn uniformly between these (and the turn's limits).
        min_turn_deg, max_turn_deg: how far a face may be turned; faces that cannot reach ``min_yaw_deg``
            within ``max_turn_deg`` are skipped.
        max_source_pitch_deg: faces with a larger |pitch| or |roll| are skipped (their fit is less reliable).
        seed: the random draw of the turns.
    """

    per_face: int = 1
    min_yaw_deg: float = 50.0
    max_yaw_deg: float = 95.0
    min_turn_deg: float = 15.0
    max_turn_deg: float = 45.0
    max_source_pitch_deg: float = 30.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.per_face < 1:
            raise ValueError(f"per_face must be >= 1. Received: {self.per_face}")
        if not 0 <= self.min_yaw_deg < self.max_yaw_deg <= angles.ANGLE_LIMIT_DEG:
            raise ValueError(
                f"need 0 <= min_yaw_deg < max_yaw_deg <= {angles.ANGLE_LIMIT_DEG}. "
                f"Received: {self.min_yaw_deg}, {self.max_yaw_deg}"
            )
        if not 0 < self.min_turn_deg <= self.max_turn_deg:
            raise ValueError(
                f"need 0 < min_turn_deg <= max_turn_deg. Received: {self.min_turn_deg}, {self.max_turn_deg}"
            )


def target_yaw(yaw_deg: float, config: ProfileConfig, rng: np.random.Generator) -> float | None:
    """A new yaw for a face at ``yaw_deg``: same side, further from the camera; None if out of reach."""
    low = max(config.min_yaw_deg, abs(yaw_deg) + config.min_turn_deg)
    high = min(config.max_yaw_deg, abs(yaw_deg) + config.max_turn_deg)
    if low > high:
        return None
    side = 1.0 if yaw_deg > 0 else -1.0 if yaw_deg < 0 else float(rng.choice([-1.0, 1.0]))
    return side * float(rng.uniform(low, high))


def _camera_points(pt3d_68: np.ndarray) -> np.ndarray:
    """``pt3d_68`` (3, 68: image x, y down, depth towards the viewer) -> (68, 3) camera points, y up."""
    p = np.asarray(pt3d_68, np.float64)
    if p.shape != (3, 68) or not np.all(np.isfinite(p)):
        raise DataError(f"pt3d_68 must be 3x68 finite values. Received: shape {p.shape}")
    return np.stack([p[0], -p[1], p[2]], axis=1)


def head_points(pt3d_68: np.ndarray, pose_ypr: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """The head in camera coordinates: 68 landmarks, forehead points, then the ellipsoid's silhouette as seen
    above the jaw's ends (below them, the neck stays with the background).

    Returns:
        (points (N, 3) camera coordinates, rotation centre (3,), index of the first silhouette point).
    """
    cam = _camera_points(pt3d_68)
    m = angles.ypr_to_matrix(pose_ypr)  # camera -> head
    origin = cam.mean(axis=0)
    head = (cam - origin) @ m.T
    width = np.linalg.norm(head[16] - head[0])
    brow_y = head[17:27, 1].mean()
    height = brow_y - head[8, 1]
    if width <= 0 or height <= 0:
        raise DataError("pt3d_68 does not look like a face (jaw width or brow-to-chin height <= 0)")
    radii = np.array([HEAD_HALF_WIDTH * width, HEAD_HALF_HEIGHT * height, HEAD_HALF_DEPTH * width])
    centre = np.array([0.0, head[8, 1] + radii[1], (head[0, 2] + head[16, 2]) / 2 - HEAD_CENTRE_BEHIND_JAW * width])
    centre[0] = (head[0, 0] + head[16, 0]) / 2

    def on_ellipsoid(x: float, y: float) -> float:
        u = 1.0 - ((x - centre[0]) / radii[0]) ** 2 - ((y - centre[1]) / radii[1]) ** 2
        return centre[2] + radii[2] * np.sqrt(max(u, 0.0))

    forehead = [
        (x, brow_y + f * height, 0.0)
        for f in (0.3, 0.6)
        for x in centre[0] + np.array([-0.36, -0.18, 0.0, 0.18, 0.36]) * width
    ]
    forehead = np.array([(x, y, min(on_ellipsoid(x, y), head[17:27, 2].max())) for x, y, _ in forehead])

    # The silhouette of the ellipsoid seen along the camera's z: the great circle of the unit sphere
    # perpendicular to the view direction scaled by the radii.
    view = m @ np.array([0.0, 0.0, 1.0]) / radii
    view /= np.linalg.norm(view)
    a = np.cross(view, [0.0, 1.0, 0.0] if abs(view[1]) < 0.9 else [1.0, 0.0, 0.0])
    a /= np.linalg.norm(a)
    b = np.cross(view, a)
    t = np.linspace(0, 2 * np.pi, SILHOUETTE_POINTS, endpoint=False)
    silhouette = centre + radii * (np.cos(t)[:, None] * a + np.sin(t)[:, None] * b)
    silhouette = silhouette[silhouette[:, 1] > max(head[0, 1], head[16, 1])]

    points_head = np.concatenate([head, forehead, silhouette])
    return points_head @ m + origin, centre @ m + origin, len(head) + len(forehead)


def _vertex_facing(points_head_cam: np.ndarray, n_face: int) -> np.ndarray:
    """Per face/forehead point, the camera z of its surface normal (from the frontal triangulation)."""
    from scipy.spatial import Delaunay

    # Topology from the head's own frontal view: any pose gives the same triangles.
    pts = points_head_cam[:n_face]
    centred = pts - pts.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    frontal = centred @ vt[:2].T
    tris = Delaunay(frontal).simplices
    normals = np.zeros_like(pts)
    for tri in tris:
        n = np.cross(pts[tri[1]] - pts[tri[0]], pts[tri[2]] - pts[tri[0]])
        if n @ vt[2] < 0:  # orient every triangle the same way as the surface
            n = -n
        normals[tri] += n
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-9)
    # vt[2] is the surface normal up to sign: point it towards the face's front (the nose tip's side).
    if (pts[30] - pts.mean(axis=0)) @ vt[2] < 0:
        normals = -normals
    return normals[:, 2]


def _anchors(shape: tuple[int, int], centre_xy: np.ndarray, radius: float) -> np.ndarray:
    """Fixed points: the image's corners and edge middles, and a ring well outside the head."""
    h, w = shape
    frame = [(0, 0), (w / 2, 0), (w - 1, 0), (w - 1, h / 2), (w - 1, h - 1), (w / 2, h - 1), (0, h - 1), (0, h / 2)]
    t = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    ring = centre_xy + 1.6 * radius * np.stack([np.cos(t), np.sin(t)], axis=1)
    ring = ring[(ring[:, 0] > 0) & (ring[:, 0] < w - 1) & (ring[:, 1] > 0) & (ring[:, 1] < h - 1)]
    return np.concatenate([np.array(frame, np.float64), ring])


def _warp_triangle(src: np.ndarray, out: np.ndarray, tri_src: np.ndarray, tri_dst: np.ndarray) -> None:
    """Paints the source triangle's pixels onto ``out`` at the destination triangle (affine)."""
    h, w = out.shape[:2]
    x0, y0 = np.floor(tri_dst.min(axis=0)).astype(int)
    x1, y1 = np.ceil(tri_dst.max(axis=0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        return
    affine = cv2.getAffineTransform(tri_src.astype(np.float32), (tri_dst - [x0, y0]).astype(np.float32))
    patch = cv2.warpAffine(src, affine, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillConvexPoly(mask, np.round((tri_dst - [x0, y0]) * 16).astype(np.int32), 1, cv2.LINE_AA, shift=4)
    region = out[y0:y1, x0:x1]
    region[mask > 0] = patch[mask > 0]


def _signed_area(tri: np.ndarray) -> float:
    return float((tri[1, 0] - tri[0, 0]) * (tri[2, 1] - tri[0, 1]) - (tri[2, 0] - tri[0, 0]) * (tri[1, 1] - tri[0, 1]))


@dataclasses.dataclass(frozen=True)
class TurnedFace:
    """A synthesized face: the image, its new labels, in the AFLW2000-3D layout."""

    image: np.ndarray
    pose_ypr: np.ndarray  # (yaw, pitch, roll) degrees
    pt2d: np.ndarray  # (2, 21) with -1 for points that turned out of view
    pt3d_68: np.ndarray  # (3, 68)


def turn_face(
    image: np.ndarray, pt3d_68: np.ndarray, pt2d: np.ndarray, pose_ypr: np.ndarray, new_yaw_deg: float
) -> TurnedFace:
    """Turns the face in ``image`` to yaw ``new_yaw_deg`` (pitch and roll kept); see the module docstring.

    Raises:
        DataError: if the landmarks do not describe a face.
    """
    from scipy.spatial import Delaunay

    pose = np.asarray(pose_ypr, np.float64).reshape(3)
    new_pose = np.array([new_yaw_deg, pose[1], pose[2]])
    points, centre, n_face = head_points(pt3d_68, pose)
    turn = angles.ypr_to_matrix(new_pose).T @ angles.ypr_to_matrix(pose)  # camera -> camera
    turned = (points - centre) @ turn.T + centre

    facing = _vertex_facing(points, n_face)
    seen = np.concatenate([facing > FACING, np.ones(len(points) - n_face, bool)])
    to_image = np.array([1.0, -1.0])
    src_xy = points[:, :2] * to_image
    dst_xy = turned[:, :2] * to_image
    dst_z = turned[:, 2]
    silhouette = points[n_face:, :2] * to_image
    radius = float(np.max(np.linalg.norm(silhouette - silhouette.mean(axis=0), axis=1)))
    anchors = _anchors(image.shape[:2], silhouette.mean(axis=0), radius)

    visible = np.flatnonzero(seen)
    src_all = np.concatenate([src_xy[visible], anchors])
    dst_all = np.concatenate([dst_xy[visible], anchors])
    z_all = np.concatenate([dst_z[visible], np.full(len(anchors), -np.inf)])
    n_head = len(visible)
    tris = Delaunay(src_all).simplices

    out = image.copy()
    order = []
    for tri in tris:
        if np.any(tri >= n_head):  # background: under everything, never culled
            order.append((-np.inf, tri))
            continue
        if _signed_area(src_all[tri]) * _signed_area(dst_all[tri]) <= 0:  # turned away from the camera
            continue
        order.append((float(z_all[tri].mean()), tri))
    order.sort(key=lambda item: item[0])
    drawn = []
    for _, tri in order:
        _warp_triangle(image, out, src_all[tri], dst_all[tri])
        drawn.append(tri)

    new_pt2d = _move_points(np.asarray(pt2d, np.float64), src_all, dst_all, drawn)
    new_pt3d = np.stack([turned[:68, 0], -turned[:68, 1], turned[:68, 2]])
    return TurnedFace(out, new_pose.astype(np.float32)[[0, 1, 2]], new_pt2d, new_pt3d)


def _move_points(pt2d: np.ndarray, src: np.ndarray, dst: np.ndarray, drawn: list[np.ndarray]) -> np.ndarray:
    """Moves each visible landmark with the drawn triangle that holds it (the last drawn wins, as in the image)."""
    moved = np.full_like(pt2d, -1.0)
    for i in range(pt2d.shape[1]):
        p = pt2d[:, i]
        if np.any(p < 0) or not np.all(np.isfinite(p)):
            continue
        for tri in reversed(drawn):  # nearest first
            a, b, c = src[tri]
            m = np.array([b - a, c - a]).T
            try:
                u, v = np.linalg.solve(m, p - a)
            except np.linalg.LinAlgError:
                continue
            if u >= -1e-6 and v >= -1e-6 and u + v <= 1 + 1e-6:
                a2, b2, c2 = dst[tri]
                moved[:, i] = a2 + u * (b2 - a2) + v * (c2 - a2)
                break
    return moved


def synthesize_folder(
    source: str | os.PathLike, out: str | os.PathLike, exclude: set[str], config: ProfileConfig
) -> int:
    """Writes turned faces of every labelled face in ``source`` (an AFLW2000-3D folder) not in ``exclude``.

    Each becomes ``<name>_yaw<+NN>.jpg`` and ``.mat`` (``Pose_Para``, ``pt2d``, ``pt3d_68``) in ``out``, the layout
    `load_faces` reads. Returns the number written.
    """
    import scipy.io

    from qa_headpose.core.atomic import atomic_path
    from qa_headpose.inference.images import read_image

    source, out = Path(source), Path(out)
    mats = sorted(p for p in source.glob("*.mat") if p.stem not in exclude and p.with_suffix(".jpg").is_file())
    if not mats:
        raise DataError(f"No image with a .mat label beside it in {source} (after leaving out {len(exclude)})")
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(config.seed)
    written = 0
    for mat_path in mats:
        mat = scipy.io.loadmat(str(mat_path))
        if "pt3d_68" not in mat or "pt2d" not in mat or "Pose_Para" not in mat:
            continue
        pose = angles.pose_para_to_ypr(mat["Pose_Para"])
        if not angles.within_limit(pose[None])[0] or max(abs(pose[1]), abs(pose[2])) > config.max_source_pitch_deg:
            continue
        image = None
        for _ in range(config.per_face):
            yaw = target_yaw(float(pose[0]), config, rng)
            if yaw is None:
                break
            if image is None:
                image = read_image(mat_path.with_suffix(".jpg"))
            face = turn_face(image, mat["pt3d_68"], mat["pt2d"], pose, yaw)
            if np.sum(np.all(face.pt2d >= 0, axis=0)) < 4:
                continue
            name = f"{mat_path.stem}_yaw{yaw:+05.1f}"
            with atomic_path(out / f"{name}.jpg") as tmp:
                cv2.imwrite(str(tmp), face.image, [cv2.IMWRITE_JPEG_QUALITY, 95])
            para = np.zeros((1, 7))
            para[0, :3] = np.radians([face.pose_ypr[1], face.pose_ypr[0], face.pose_ypr[2]])
            with atomic_path(out / f"{name}.mat") as tmp:
                scipy.io.savemat(str(tmp), {"Pose_Para": para, "pt2d": face.pt2d, "pt3d_68": face.pt3d_68})
            written += 1
    return written

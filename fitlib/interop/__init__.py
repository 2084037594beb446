"""Other tools' formats: keypoint inputs fitlib reads and training / results files it writes.

Readers: :mod:`~fitlib.interop.openpose` (OpenPose JSON per frame), :mod:`~fitlib.interop.coco_annotations`
(COCO keypoint annotations). Writers (each writes atomically): :mod:`~fitlib.interop.humandata` (mmhuman3d
HumanData npz), :mod:`~fitlib.interop.spin_npz` (SPIN training npz), :mod:`~fitlib.interop.easymocap`
(EasyMocap per-frame SMPL JSON). :mod:`~fitlib.interop.convert` turns a fit into another body model's
parameters (e.g. real SMPL's) by fitting. The writers take plain arrays; :func:`results_to_arrays` makes them from
:class:`~fitlib.FitResult` lists. Meshes: :meth:`fitlib.FitResult.export_meshes` (``.glb``, ``.obj``, ``.ply``).
"""
from fitlib.interop.arrays import ExportArrays, results_to_arrays
from fitlib.interop.bvh import bvh_text, write_bvh
from fitlib.interop.coco_annotations import CocoImage, coco_image, is_coco_annotations, read_coco_keypoints
from fitlib.interop.convert import Conversion, convert_fit
from fitlib.interop.easymocap import easymocap_people, export_easymocap, read_easymocap, rest_pelvis, write_easymocap
from fitlib.interop.humandata import read_humandata, to_human_data, write_humandata
from fitlib.interop.keypoint_files import foreign_keypoints
from fitlib.interop.openpose import (OpenPoseFrame, is_openpose, list_openpose_files, read_openpose,
                                     read_openpose_folder)
from fitlib.interop.spin_npz import spin_keypoints, write_spin_npz

__all__ = ["CocoImage", "Conversion", "ExportArrays", "convert_fit", "OpenPoseFrame", "coco_image", "easymocap_people", "export_easymocap",
           "foreign_keypoints", "is_coco_annotations", "is_openpose", "list_openpose_files", "read_coco_keypoints",
           "read_easymocap", "read_humandata", "read_openpose", "read_openpose_folder", "rest_pelvis",
           "results_to_arrays", "spin_keypoints", "to_human_data", "write_easymocap", "write_humandata",
           "write_spin_npz", "export_training_file", "bvh_text", "write_bvh"]


def export_training_file(path, arrays: ExportArrays, fmt: str, **options):
    """Write :class:`ExportArrays` as ``fmt``: ``"spin"`` (:func:`write_spin_npz`) or ``"humandata"``
    (:func:`write_humandata`); ``options`` go to the writer (e.g. ``expand=``, ``config=``). Returns the path."""
    common = dict(pose=arrays.pose, betas=arrays.betas, keypoints=arrays.keypoints, layout=arrays.layout,
                  boxes=arrays.boxes, has_smpl=arrays.has_smpl)
    if fmt == "spin":
        return write_spin_npz(path, imgname=arrays.image_names, **common, **options)
    if fmt == "humandata":
        options.setdefault("meta", {"body_model": arrays.model})
        return write_humandata(path, image_path=arrays.image_names, transl=arrays.transl,
                               box_scores=arrays.box_scores, **common, **options)
    raise ValueError(f"unknown training file format {fmt!r}; known: 'spin', 'humandata'")

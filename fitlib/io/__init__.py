"""Files in and out: images (:func:`load_image`, :func:`save_image`), the one atomic writer
(:func:`atomic_write`), the cache folder (:func:`cache_dir`) and the readers of untrusted files
(:mod:`fitlib.io.safe_load`: regular files only, the allow-list unpickler, ``.npz`` without pickles)."""
from fitlib.io.atomic import atomic_write
from fitlib.io.cache import cache_dir
from fitlib.io.images import ImageLike, load_image, save_image
from fitlib.io.safe_load import load_npz, load_pickle, read_regular_file

__all__ = ["atomic_write", "cache_dir", "load_image", "save_image", "ImageLike", "load_npz", "load_pickle",
           "read_regular_file"]

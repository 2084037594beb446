"""Files in and out: images (:func:`load_image`), the one atomic writer (:func:`atomic_write`) and
the cache folder (:func:`cache_dir`)."""
from fitlib.io.atomic import atomic_write
from fitlib.io.cache import cache_dir
from fitlib.io.images import ImageLike, load_image

__all__ = ["atomic_write", "cache_dir", "load_image", "ImageLike"]

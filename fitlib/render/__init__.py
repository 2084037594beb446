"""Rendering without GL: a depth-buffered triangle rasteriser in torch (:func:`rasterize`), smooth shading,
the overlay pictures of fits (:func:`compose_overlay`, used by :meth:`fitlib.FitResult.render_overlay`) and
person-index masks and depth maps for pseudo-labels (:func:`render_maps`)."""
from fitlib.render.overlay import compose_overlay, side_view_vertices
from fitlib.render.people import PeopleRaster, PersonMaps, rasterize_people, render_maps
from fitlib.render.rasterize import Raster, rasterize
from fitlib.render.shade import LIGHT_BLUE, shade, vertex_normals

__all__ = ["compose_overlay", "side_view_vertices", "PeopleRaster", "PersonMaps", "rasterize_people", "render_maps",
           "Raster", "rasterize", "LIGHT_BLUE", "shade", "vertex_normals"]

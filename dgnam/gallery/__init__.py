"""A static gallery site of a probe: an index of every unit and a detail view per unit, opened from
``file://`` with no server and no network."""

from dgnam.gallery.site import write_site

__all__ = ["write_site"]

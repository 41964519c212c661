"""Tests of lossgeom.linear (deep linear networks, spec §4 and §5)."""

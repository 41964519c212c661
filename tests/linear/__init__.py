"""Tests of lossgeom.linear (deep linear networks, §4 and §5)."""

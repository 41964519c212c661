"""Tests of lossgeom.loci and lossgeom.manifold (critical loci and solution manifolds, spec §3)."""

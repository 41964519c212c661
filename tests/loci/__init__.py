"""Tests of lossgeom.loci and lossgeom.manifold (critical loci and solution manifolds, §3)."""

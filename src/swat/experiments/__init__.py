"""Experiments built on the library: ``swat reproduce`` trains the paper's baselines and SWAT
(:mod:`swat.experiments.reproduce`) and checks the paper's claims against what they measure
(:mod:`swat.experiments.claims`)."""

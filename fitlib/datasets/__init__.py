"""Data fitlib reads and makes: the shipped motion capture (:mod:`~fitlib.datasets.mocap`), 3DPW-format
sequences (:mod:`~fitlib.datasets.threedpw`) and the synthetic stand-in (:mod:`~fitlib.datasets.synthetic`)."""

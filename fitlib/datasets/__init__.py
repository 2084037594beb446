"""Data fitlib reads and makes: the shipped motion capture (:mod:`~fitlib.datasets.mocap`), 3DPW-format
sequences (:mod:`~fitlib.datasets.threedpw`), the synthetic stand-in (:mod:`~fitlib.datasets.synthetic`), SPIN's
person crops and augmentation (:mod:`~fitlib.datasets.crops`) and SPIN's npz files as crop batches
(:mod:`~fitlib.datasets.spin_data`)."""

"""Packaging for fitlib.

The top-level ``priors/`` and ``configs/`` folders (the shipped pose prior and mocap clips, the fitting
configs) are installed as the data packages ``fitlib.priors_data`` and ``fitlib.configs`` so that
priors and configs load from any install, editable or not. They hold data only: the code that builds
the priors is ``fitlib train-prior`` / ``fitlib extract-mocap``.
"""
from setuptools import find_packages, setup

setup(
    name="fitlib",
    version="0.1.0",
    description="Recover SMPL bodies from images and videos: a learned init refined by batched SMPLify-style fitting, with free body models, priors and pseudo-label jobs.",
    license_expression="Apache-2.0",  # SPDX (PEP 639); setuptools >= 77 deprecates the licence classifier
    license_files=["LICENSE"],
    classifiers=[
        "Programming Language :: Python :: 3",
        "Operating System :: OS Independent",
    ],
    python_requires=">=3.10",
    packages=find_packages(include=["fitlib", "fitlib.*"]) + ["fitlib.priors_data", "fitlib.configs"],
    package_dir={"fitlib": "fitlib", "fitlib.priors_data": "priors", "fitlib.configs": "configs"},
    package_data={
        "fitlib.detection": ["models/*"],
        "fitlib.configs": ["*.yaml", "train/*.yaml"],
        "fitlib.regression": ["weights/*.pt", "weights/*.md"],
        "fitlib.priors_data": ["*.npz", "*.md"],
    },
    install_requires=[
        "torch>=2.1",
        "smplx>=0.1.28",
        "numpy>=1.24",
        "scipy>=1.10",
        "opencv-python-headless>=4.8",
        "trimesh>=4.0",
        "pyyaml>=6.0",
        "platformdirs>=3.0",
        "tqdm>=4.60",
        "anny==0.6.2",
        "roma>=1.5",
        "ai-edge-litert==2.3.0",
        "pydantic>=2.6",
    ],
    extras_require={
        "test": ["pytest>=7"],
        # label jobs beyond one machine (fitlib label --ray) and data-parallel training (Ray Train)
        "ray": ["ray[train]>=2.9"],
        "video": ["av>=14"],  # H.264 overlay videos (PyAV's wheels bundle FFmpeg with libx264); else VP9 .webm
    },
    entry_points={"console_scripts": ["fitlib=fitlib.cli:main"]},
)

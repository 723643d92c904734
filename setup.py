"""pip install of the ROS-free library (model, data, geometry, training, tools) for users without ROS.

    pip install .            # torch, torchvision and the rest from requirements/base.txt
    pip install .[devkit]    # + the official nuscenes-devkit for the optional oracle checks

The ROS 2 package (messages, node, launch files) is built with colcon instead; see README. Do not pip-install
this project into an environment where the messages were built with CMake: pip would remove the generated
sparsedrive_ros/msg directory (the two share one package directory).
"""
from setuptools import find_packages, setup

setup(
    name="sparsedrive_ros",
    version="0.1.0",
    description="SparseDrive end-to-end driving in pure PyTorch, with a ROS 2 node",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["sparsedrive_ros", "sparsedrive_ros.*"]),
    package_data={"sparsedrive_ros": ["assets/*.safetensors"]},  # the bundled demo model
    install_requires=[
        "torch>=2.4",
        "torchvision>=0.19",
        "numpy",
        "scipy",
        "opencv-python-headless",
        "rosbags>=0.10",
        "safetensors",
    ],
    extras_require={"devkit": ["nuscenes-devkit"], "test": ["pytest"],
                    "onnx": ["onnx", "onnxruntime", "onnxscript"]},  # tools/export_onnx.py, requirements/onnx.txt
    entry_points={
        "console_scripts": [
            "sparsedrive-infer-npz = sparsedrive_ros.tools.infer_npz:main",
            "sparsedrive-make-synthetic = sparsedrive_ros.tools.make_synthetic:main",
            "sparsedrive-nuscenes-to-bag = sparsedrive_ros.tools.nuscenes_to_bag:main",
            "sparsedrive-convert-checkpoint = sparsedrive_ros.tools.convert_checkpoint:main",
            "sparsedrive-export-onnx = sparsedrive_ros.tools.export_onnx:main",
        ]
    },
)

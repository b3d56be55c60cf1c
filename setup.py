from setuptools import find_packages, setup

setup(
    name="keras-genlab",
    version="0.1.0",
    description="Generative-AI datasets with Keras: synthetic X-rays with KerasCV Stable Diffusion, "
    "and a DCGAN on MNIST judged and sorted by LeNet-5.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["genlab", "gan", "lenet", "xray", "xray.*", "mnist_lab", "scripts"]),
    # The reference judge every MNIST metric is measured with (lenet/reference.py).
    package_data={"lenet": ["reference_judge_*.npz", "reference_judge_*.json"]},
    install_requires=[
        # Tested pairs with keras-cv 0.9.0: TensorFlow 2.21 / Keras 3.15 (make test) and Colab's
        # TensorFlow 2.19 / Keras 3.10 (make test-colab).
        "tensorflow>=2.19,<2.22",
        "keras>=3.10,<3.16",
        "keras-cv==0.9.0",
        # KerasCV imports tensorflow_datasets, which imports this. 1.17's protobuf code (from protobuf
        # 4.25) loads under TensorFlow 2.19's protobuf 5 and 2.21's protobuf 7 alike; 1.21's needs
        # protobuf 6 or later, so under TensorFlow 2.19 every program printed its import's traceback.
        "tensorflow-metadata<1.18",
        "numpy",
        "scipy",  # FID's matrix square root (scipy.linalg.sqrtm).
        "matplotlib",
        "pillow",
        "absl-py",
        "tensorboard",  # TensorFlow 2.21 no longer installs it; the GAN logs to it.
        "pyyaml",  # Prompt files in YAML.
        "h5py",  # KerasCV's weight files (Keras installs it too).
        "safetensors",  # diffusers checkpoints, read as NumPy: no PyTorch, no pickle.
    ],
    extras_require={
        # The bridge's parity tests run diffusers' and transformers' own networks (PyTorch CPU), and
        # diffusers reads LoRA files through PEFT;
        # 2.13.0 is the CPU build these machines carry (a newer pin pulls GBs of CUDA wheels).
        # ruff is pinned: another release may format differently, and CI fails on any difference.
        # pytest-xdist runs `make test-fast` on two workers; datasets reads the hf: test folder.
        "test": [
            "pytest",
            "pytest-xdist",
            "ruff==0.17.6",
            "torch==2.13.0",
            "diffusers",
            "transformers",
            "peft",
            "nbclient",
            "nbformat",
            "ipykernel",
            "datasets",
        ],
        # genlab-xray-data --source=hf:NAME: Hugging Face's own reader for its Hub and save_to_disk folders.
        "hf": ["datasets"],
    },
    entry_points={
        "console_scripts": [
            "genlab-train-gan=scripts.train_gan:run",
            "genlab-train-lenet=scripts.train_lenet:run",
            "genlab-sort-digits=scripts.sort_digits:run",
            "genlab-mnist-lab=scripts.mnist_lab:run",
            "genlab-xray=scripts.generate_xrays:run",
            "genlab-convert-diffusers=scripts.convert_diffusers:run",
            "genlab-xray-judge=scripts.judge_xrays:run",
            "genlab-xray-finetune=scripts.finetune_xrays:run",
            "genlab-export-diffusers=scripts.export_diffusers:run",
            "genlab-xray-data=scripts.xray_data:run",
        ],
    },
)

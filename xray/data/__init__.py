"""The classes of a dataset and their prompts, users' class-folder image sets, and public X-ray sets
written as such folders. No TensorFlow (Keras only to download a public set)."""

"""Image sizes the data pipeline and the run configuration agree on; imports nothing heavy.

``mtbench.config`` reads the minimum from here so ``mtbench --help`` stays free of torch.
"""

# ResNet downsamples by 32: a smaller input leaves the last stage less than one pixel.
MIN_IMAGE_SIZE = 32
REAL_IMAGE_SIZE = 224
SYNTHETIC_IMAGE_SIZE = 64

"""Model architectures, one file per task: ``ef`` (the video EF regressor) and ``classify`` (the
tutorial-size CNN and a CIFAR-style ResNet-18)."""

"""The model families; importing this registers every architecture and variant."""
from zoo.models.googlenet import GoogLeNet, GoogLeNetOutputs
from zoo.models.resnet import ResNet
from zoo.models.vgg import VGG

__all__ = ["GoogLeNet", "GoogLeNetOutputs", "ResNet", "VGG"]

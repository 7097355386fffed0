# Follows the proto package: broker.v1 gives 1.x.y.
__version__ = "1.0.0"

"""`orchard predict`: which fruit is in each image of a folder, on Spark."""


def register(subparsers) -> None:  # TODO(H14): replaced below
    pass

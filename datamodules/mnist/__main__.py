"""``python -m datamodules.mnist ...``: the command line of `datamodules.mnist.cli`."""

from datamodules.mnist.cli import main

main()

import sys

from baize.evaluate import cli

cli(sys.argv[1:])

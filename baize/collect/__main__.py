import sys

from baize.collect import cli

cli(sys.argv[1:])

import sys

from baize.sdf import cli

cli(sys.argv[1:])

import sys

from .wrapper import main

sys.exit(main(sys.argv[1:]))

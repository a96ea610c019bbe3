"""`python -m sim [flags]`: start the simulator (sim/server.py has the flags and the control API)."""
import sys

from sim.server import main

sys.exit(main())
